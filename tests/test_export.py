"""ebm-export: a model-only safetensors folder that scores exactly like its checkpoint and loads
wherever a checkpoint does, without pickle."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import child_env

from commands.export_command import export_checkpoint
from ebm import token_logprobs
from runs.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from runs.runfiles import checkpoints_of


@pytest.fixture
def exported(full_run, tmp_path):
    ws, _ = full_run
    latest = ws / "checkpoints" / "full" / "latest.pt"
    return latest, export_checkpoint(latest, tmp_path / "export")


def test_an_export_scores_exactly_like_its_checkpoint(exported, gen):
    latest, folder = exported
    files = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert sorted(p.name for p in folder.iterdir()) == files
    a, b = (model_from_checkpoint(load_checkpoint(p)) for p in (latest, folder))
    tokens = torch.randint(a.cfg.vocab_size, (3, a.cfg.context_global + a.cfg.seq_length + 1), generator=gen)
    assert torch.equal(token_logprobs(a, tokens), token_logprobs(b, tokens))
    assert load_checkpoint(folder)["step"] == load_checkpoint(latest)["step"]


def test_a_damaged_export_is_refused(exported):
    _, folder = exported
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x04  # inside the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(folder)


def test_export_cli_and_the_picker(full_run, tmp_path):
    ws, _ = full_run
    env = child_env()
    run_dir = ws / "checkpoints" / "full"
    proc = subprocess.run(
        [sys.executable, "-m", "commands", "export", "--checkpoint", str(run_dir), "--out", str(tmp_path / "e")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and (tmp_path / "e" / "model.safetensors").exists(), proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "commands", "export", "--checkpoint", str(tmp_path / "none.pt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert checkpoints_of(tmp_path)[-1] == tmp_path / "e"  # a run folder's pickers list its exports


def test_a_changed_config_json_is_refused(exported):
    """The digest covers config.json: a run id pointing elsewhere would redirect what is read."""
    import json

    _, folder = exported
    meta = json.loads((folder / "config.json").read_text())
    meta["run_id"] = "someone-else"
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match the digest"):
        load_checkpoint(folder)


def test_a_kill_during_a_re_export_leaves_the_old_export_or_the_new_one(full_run, tmp_path):
    """kill -9 at 12 moments of a re-export: each time the folder loads (the old digest or the
    new), and the next export cleans what the killed one left."""
    import time

    ws, _ = full_run
    latest, folder = ws / "checkpoints" / "full" / "latest.pt", tmp_path / "export"
    export_checkpoint(latest, folder)
    env = child_env()
    cmd = [sys.executable, "-m", "commands", "export", "--checkpoint", str(latest), "--out", str(folder)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    whole = time.perf_counter() - t0
    for i in range(12):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(whole * (0.5 + 0.5 * i / 11))  # the writes come at the end, after torch has loaded
        proc.kill()
        proc.wait()
        from runs.files import restore_folder

        restore_folder(folder)  # what the next start does first
        assert load_checkpoint(folder)["step"] == load_checkpoint(latest)["step"], i
    export_checkpoint(latest, folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temp or parked folders left
    assert [p.name for p in checkpoints_of(tmp_path)] == ["export"]


def test_an_export_with_a_string_schema_version_says_so(exported):
    import json

    _, folder = exported
    meta = json.loads((folder / "config.json").read_text())
    meta["schema_version"] = "1"
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="schema version '1', this ebm-lab reads version 1 \\(a number\\)"):
        load_checkpoint(folder)


def test_a_folder_parked_by_a_killed_swap_comes_back(tmp_path):
    """The one moment of a swap where neither folder is in place: the next start restores."""
    from runs.files import atomic_folder, restore_folder

    folder = tmp_path / "export"
    atomic_folder(folder, lambda f: (f / "a").write_text("old"))
    os.rename(folder, tmp_path / ".export.old")  # killed between the two renames
    (tmp_path / ".export.123.tmp").mkdir()  # and a temp folder half-written by another killed writer
    restore_folder(folder)
    assert (folder / "a").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    atomic_folder(folder, lambda f: (f / "a").write_text("new"))
    assert (folder / "a").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["export"]
