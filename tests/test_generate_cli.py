"""ebm-generate, the real command on the shared tiny run: JSON lines with each constraint's
verdict, and every bad input as one clear line with a non-zero exit."""

import json
import subprocess
import sys

import pytest
from conftest import child_env

pytestmark = pytest.mark.slow


def generate(ws, *args):
    env = child_env(EBM_CACHE=str(ws / "cache"))
    cmd = [sys.executable, "-m", "commands", "generate", "--checkpoint", str(ws / "checkpoints" / "full"), *args]
    return subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=300)


def test_json_lines_carry_text_tokens_and_each_constraints_verdict(full_run):
    ws, _ = full_run
    proc = generate(
        ws,
        "--prompt",
        "The city",
        "--tokens",
        "8",
        "--samples",
        "2",
        "--keywords",
        "the",
        "--avoid",
        "of",
        "--chains",
        "4",
        "--steps",
        "5",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2
    for sample in lines:
        assert isinstance(sample["text"], str) and len(sample["tokens"]) == 8
        kinds = [(c["kind"], c["label"]) for c in sample["constraints"]]
        assert kinds == [("keyword", "the"), ("avoid", "of")]
        assert all(isinstance(c["met"], bool) and isinstance(c["energy"], float) for c in sample["constraints"])
        assert sample["constraints"][1]["met"]  # avoid is hard: the draw never writes it
        assert 0 <= sample["moves_accepted"] <= 1  # the default budget leaves room for Metropolis moves


def test_infilling_from_the_command_line(full_run):
    ws, _ = full_run
    proc = generate(
        ws,
        "--prompt",
        "The city",
        "--tokens",
        "4",
        "--right-context",
        " is large.",
        "--sampler",
        "importance",
        "--budget-drafts",
        "8",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sample,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sample["constraints"][0]["kind"] == "right_context" and sample["constraints"][0]["energy"] > 0


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--keywords", "city,,river"], "an empty word was given"),
        (["--weight", "keyword=heavy"], "--weight 'keyword=heavy': give NAME=VALUE with a number"),
        (["--weight", "keywords=2"], "unknown constraint 'keywords'"),
        (["--right-context", "word " * 300], "does not fit the model's window"),
        (["--sampler", "magic"], "--sampler 'magic': choose one of langevin"),
        (["--tokens", "0"], "--tokens must be at least 1"),
        (["--move-share", "1"], "--move-share must be at least 0 and below 1"),
        (["--device", "vulkan"], "use cpu or cuda"),
    ],
)
def test_bad_input_is_one_clear_line(full_run, args, fragment):
    ws, _ = full_run
    proc = generate(ws, "--prompt", "The city", *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert fragment in proc.stderr, proc.stderr


def test_the_command_line_defaults_are_the_library_defaults():
    from commands.cli import generate_parser
    from ebm.composition import ChainSettings

    args = generate_parser().parse_args(["--checkpoint", "x"])
    chain = ChainSettings()
    assert (args.chains, args.steps, args.move_share) == (chain.chains, chain.steps, chain.move_share)
