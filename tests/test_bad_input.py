"""Every bad input a user can give the commands is one clear line on stderr, a non-zero exit,
no traceback, and nothing of the user's overwritten."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import child_env, train

from runs.checkpoint import content_digest
from runs.runfiles import RunFiles

pytestmark = pytest.mark.slow


def run(ws, command, *args):
    env = child_env(EBM_CACHE=str(ws / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "commands", command, *args], cwd=ws, env=env, capture_output=True, text=True, timeout=300
    )


def one_line(proc, fragment):
    assert proc.returncode not in (0, 1) or proc.returncode == 1 and "cannot write" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert fragment in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def bad_files(workspace):
    (workspace / "binary.bin").write_bytes(bytes(range(256)) * 400)
    (workspace / "latin1.txt").write_bytes("caf\xe9 na\xefve r\xe9sum\xe9\n".encode("latin-1") * 200)
    text = (workspace / "corpus.txt").read_bytes()
    (workspace / "late_nul.txt").write_bytes(text * (2 + (1 << 20) // len(text)) + b"\x00 tail\n")  # NUL past the first MiB
    (workspace / "rare_latin1.txt").write_bytes(text + "caf\xe9\n".encode("latin-1"))  # one bad byte in ~100 KB
    (workspace / "blank.txt").write_text(" \n\t\n" * 50)
    (workspace / "wrong_type.json").write_text(json.dumps({"knn_k": "many"}))
    (workspace / "not_json.json").write_text("{knn_k: 3")
    return workspace


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--set", "learning_rate=inf"], "learning_rate must be a finite number"),
        (["--set", "knn_k=abc"], "cannot parse knn_k"),
        (["--set", "nonsense=1"], "bad override"),
        (["--config", "wrong_type.json"], "knn_k must be an integer"),
        (["--config", "not_json.json"], "not_json.json: Expecting"),
        (["--config", "missing.json"], "No such file"),
        (["--data", "binary.bin"], "is not a text file"),
        (["--data", "latin1.txt"], "is not UTF-8 text"),
        (["--data", "late_nul.txt"], "contains NUL bytes, the first at byte"),
        (["--data", "rare_latin1.txt"], "is not UTF-8 text (an undecodable byte at"),
        (["--data", "blank.txt"], "holds no text (only whitespace)"),
        (["--tokenizer", "bpe:10"], "too small"),
        (["--batch-size", "4096"], "fewer than one batch of 4096"),
        (["--set", "knn_k=1000000"], "knn_k must be <= 4,096"),
        (["--set", "latent_dim=1000000000"], "latent_dim must be <= 16,384"),
        (["--set", "langevin_steps=1000000000"], "langevin_steps must be <= 100,000"),
    ],
)
def test_train_refuses_bad_input_in_one_line(bad_files, extra, fragment):
    args = [a if not a.endswith((".json", ".bin", ".txt")) or a == "corpus.txt" else str(bad_files / a) for a in extra]
    proc = train(bad_files, "--run-id", "bad", "--max-steps", "1", *args)
    one_line(proc, fragment)


def test_a_checkpoint_whose_tensors_do_not_fit_its_config(full_run, tmp_path):
    ws, _ = full_run
    run_dir = tmp_path / "checkpoints" / "r"
    shutil.copytree(ws / "checkpoints" / "full", run_dir)
    state = torch.load(run_dir / "latest.pt", weights_only=True)
    state["config"]["latent_dim"] = 48  # the tensors are 32 wide
    state.pop("content_digest")
    state["content_digest"] = content_digest(state)  # a consistent file, just not a model that fits
    torch.save(state, run_dir / "latest.pt")
    proc = run(ws, "evaluate", "--checkpoint", str(run_dir / "latest.pt"), "--data", "corpus.txt")
    one_line(proc, "do not match its config")


def test_a_checkpoint_beside_another_runs_tokenizer(full_run, tmp_path, workspace):
    ws, _ = full_run
    run_dir = tmp_path / "r"
    shutil.copytree(ws / "checkpoints" / "full", run_dir)
    other = RunFiles.under(workspace, "other-tok")
    if not other.tokenizer.exists():
        (workspace / "other.txt").write_text((workspace / "corpus.txt").read_text()[::-1])
        assert (
            train(workspace, "--run-id", "other-tok", "--max-steps", "1", "--data", str(workspace / "other.txt")).returncode == 0
        )
    shutil.copy(other.tokenizer, run_dir / "tokenizer.json")
    proc = run(ws, "evaluate", "--checkpoint", str(run_dir), "--data", "corpus.txt")
    one_line(proc, "not the tokenizer this checkpoint was trained with")


def test_evaluate_and_diagnose_on_missing_and_non_checkpoint_files(workspace, bad_files):
    one_line(run(workspace, "evaluate", "--checkpoint", "nowhere.pt"), "no checkpoint at")
    one_line(run(workspace, "diagnose", "--checkpoint", "nowhere.pt"), "no checkpoint at")
    one_line(run(workspace, "diagnose", "--checkpoint", str(bad_files / "binary.bin")), "corrupt or truncated")


def test_a_memory_fitted_on_the_scored_split(full_run):
    ws, _ = full_run
    latest = str(ws / "checkpoints" / "full" / "latest.pt")
    proc = run(ws, "evaluate", "--checkpoint", latest, "--data", "corpus.txt", "--memory", "corpus.txt")
    one_line(proc, "fitted on the valid split: score --split test")


@pytest.mark.parametrize("run_id", ["../../escaped", "/tmp/absolute-run", "a/b", "..", ".hidden", "x" * 129])
def test_a_run_id_that_is_not_a_plain_name_is_refused_before_anything_is_written(workspace, tmp_path, run_id):
    out = tmp_path / "out"
    for detach in ([], ["--detach"]):
        proc = train(workspace, "--run-id", run_id, "--max-steps", "1", "--out", str(out), *detach)
        one_line(proc, "is not a plain name")
    assert not out.exists() and not (tmp_path / "escaped").exists() and not Path("/tmp/absolute-run").exists()


def test_a_new_run_under_an_existing_id_is_refused_and_the_run_is_untouched(full_run):
    ws, _ = full_run
    latest = ws / "checkpoints" / "full" / "latest.pt"
    before = (latest.read_bytes(), (ws / "logs" / "ebm" / "full.jsonl").read_bytes())
    for detach in ([], ["--detach"]):
        proc = train(ws, "--run-id", "full", "--max-steps", "3", *detach)
        one_line(proc, "run 'full' already exists")
        assert "--resume full" in proc.stderr
    assert (latest.read_bytes(), (ws / "logs" / "ebm" / "full.jsonl").read_bytes()) == before


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--max-minutes", "0"], "--max-minutes 0.0: give a number of minutes above 0"),
        (["--max-minutes", "-1"], "--max-minutes -1.0"),
        (["--max-minutes", "nan"], "--max-minutes nan"),
        (["--max-steps", "-1"], "--max-steps -1: give 1 or more"),
        (["--max-steps", "0"], "--max-steps 0: give 1 or more"),
        (["--log-every", "0"], "--log-every 0: give 1 or more"),
        (["--epochs", "0"], "--epochs 0: give 1 or more"),
    ],
)
def test_a_budget_that_cannot_train_is_refused(workspace, tmp_path, flags, fragment):
    proc = train(workspace, "--run-id", "budget", "--out", str(tmp_path), *flags)
    one_line(proc, fragment)
    assert not (tmp_path / "checkpoints").exists()


def test_a_checkpoint_without_its_digest_is_refused_unless_asked(full_run, tmp_path):
    ws, _ = full_run
    run_dir = tmp_path / "checkpoints" / "r"
    shutil.copytree(ws / "checkpoints" / "full", run_dir)
    state = torch.load(run_dir / "latest.pt", weights_only=True)
    state.pop("content_digest")
    state["model"]["log_beta"] = state["model"]["log_beta"] + 1.0  # edited, and no digest to tell
    torch.save(state, run_dir / "latest.pt")
    args = ("--checkpoint", str(run_dir / "latest.pt"), "--data", "corpus.txt", "--max-tokens", "64", "--samples", "0")
    one_line(run(ws, "evaluate", *args), "has no digest, so its content cannot be verified")
    env = child_env(EBM_CACHE=str(ws / "cache"), EBM_ACCEPT_UNVERIFIED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "commands", "evaluate", *args], cwd=ws, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_another_runs_checkpoint_is_not_resumed_as_this_run(full_run, tmp_path):
    ws, _ = full_run
    out = tmp_path / "out"
    shutil.copytree(ws / "checkpoints" / "full", out / "checkpoints" / "mine")  # run "full"'s files under the id "mine"
    proc = train(ws, "--resume", "mine", "--out", str(out), "--max-steps", "1")
    one_line(proc, "belongs to run 'full', not 'mine'")


def test_resume_reads_the_runs_own_text_from_any_folder_and_refuses_a_changed_one(workspace, tmp_path):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    text = (workspace / "corpus.txt").read_text()
    (here / "small.txt").write_text(text)
    (elsewhere / "small.txt").write_text(text[::-1])  # another text under the same relative name
    env = child_env(EBM_CACHE=str(workspace / "cache"))
    base = [sys.executable, "-m", "commands", "train", "--out", str(tmp_path), "--quiet"]
    start = [
        *base,
        "--run-id",
        "rel",
        "--data",
        "small.txt",
        "--tokenizer",
        "bpe:300",
        "--config",
        str(workspace / "tiny.json"),
        "--max-steps",
        "2",
    ]
    assert subprocess.run(start, cwd=here, env=env, capture_output=True, timeout=300).returncode == 0
    resumed = subprocess.run(
        [*base, "--resume", "rel", "--max-steps", "3"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]  # the run's own file, by its absolute path
    (here / "small.txt").write_text(text[: len(text) // 2])
    refused = subprocess.run(
        [*base, "--resume", "rel", "--max-steps", "4"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    one_line(refused, "has changed since run rel trained on it")
    accepted = subprocess.run(
        [*base, "--resume", "rel", "--max-steps", "4", "--accept-changed-data"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert accepted.returncode == 0 and "warning: the text at" in accepted.stderr, accepted.stderr[-2000:]


@pytest.fixture
def run_copy(full_run, tmp_path):
    """The shared run's checkpoints under its own id in a folder a test may damage."""
    ws, _ = full_run
    run_dir = tmp_path / "checkpoints" / "full"
    shutil.copytree(ws / "checkpoints" / "full", run_dir)
    return ws, run_dir


BAD_TOK = "is not a readable tokenizer"


@pytest.mark.parametrize("content,fragment", [(b"", BAD_TOK), (b'{"model": 3', BAD_TOK), (None, "tokenizer.json is missing")])
def test_a_damaged_or_missing_tokenizer_is_one_line(run_copy, content, fragment):
    ws, run_dir = run_copy
    tok = run_dir / "tokenizer.json"
    tok.unlink() if content is None else tok.write_bytes(content)
    one_line(run(ws, "evaluate", "--checkpoint", str(run_dir), "--data", "corpus.txt", "--max-tokens", "64"), fragment)
    one_line(train(ws, "--resume", "full", "--out", str(run_dir.parents[1]), "--max-steps", "1"), fragment)


def test_diagnose_on_a_checkpoint_that_is_no_model_is_one_line(run_copy):
    ws, run_dir = run_copy
    state = torch.load(run_dir / "latest.pt", weights_only=True)
    state["config"]["latent_dim"] = 48  # the splats' tensors are 32 wide
    state.pop("content_digest")
    state["content_digest"] = content_digest(state)
    torch.save(state, run_dir / "latest.pt")
    one_line(run(ws, "diagnose", "--checkpoint", str(run_dir / "latest.pt")), "cannot be read as a model's")
    table = run(ws, "diagnose", "--batch", "--run-id", "full", "--out", str(run_dir.parents[1]))
    assert table.returncode == 0 and "Traceback" not in table.stderr and "latest.pt | unreadable" in table.stdout


@pytest.mark.parametrize("config", ["[1, 2]", '"text"', "{}"])
def test_an_export_with_a_broken_config_json_is_one_line(run_copy, config):
    from commands.export_command import export_checkpoint

    ws, run_dir = run_copy
    folder = export_checkpoint(run_dir / "latest.pt", run_dir / "export")
    (folder / "config.json").write_text(config)
    one_line(run(ws, "evaluate", "--checkpoint", str(folder), "--data", "corpus.txt", "--max-tokens", "64"), str(folder))
    one_line(run(ws, "diagnose", "--checkpoint", str(folder)), str(folder))


def test_scoring_an_empty_file_is_one_line(full_run, tmp_path):
    ws, _ = full_run
    (tmp_path / "empty.txt").write_text("")
    proc = run(
        ws, "evaluate", "--checkpoint", str(ws / "checkpoints" / "full"), "--data", str(tmp_path / "empty.txt"), "--split", "all"
    )
    one_line(proc, "holds no text")
