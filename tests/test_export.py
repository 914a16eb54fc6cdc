"""ebm-export: a model-only safetensors folder that scores exactly like its checkpoint and loads
wherever a checkpoint does, without pickle."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from ebm import token_logprobs
from trainer.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from trainer.export import export_checkpoint
from trainer.runfiles import checkpoints_of


@pytest.fixture
def exported(full_run, tmp_path):
    ws, _ = full_run
    latest = ws / "checkpoints" / "full" / "latest.pt"
    return latest, export_checkpoint(latest, tmp_path / "export")


def test_an_export_scores_exactly_like_its_checkpoint(exported, gen):
    latest, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
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
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run_dir = ws / "checkpoints" / "full"
    proc = subprocess.run([sys.executable, "-m", "trainer.export", "--checkpoint", str(run_dir), "--out", str(tmp_path / "e")],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and (tmp_path / "e" / "model.safetensors").exists(), proc.stderr
    bad = subprocess.run([sys.executable, "-m", "trainer.export", "--checkpoint", str(tmp_path / "none.pt")],
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert checkpoints_of(tmp_path)[-1] == tmp_path / "e"  # a run folder's pickers list its exports
