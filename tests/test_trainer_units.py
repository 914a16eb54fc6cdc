import json

import pytest
import torch

from ebm import small_config
from trainer import alerts
from trainer.checkpoint import CheckpointError, load_checkpoint, prune_checkpoints, save_checkpoint
from trainer.curriculum import Curriculum
from trainer.data import Windows
from trainer.logs import LogReader, RunLogger
from trainer.status import effective_state, write_status
from trainer.wikitext import detokenize


def test_energy_rising_fires_on_trend_not_noise():
    gen = torch.Generator().manual_seed(0)
    noise = (torch.randn(200, generator=gen) * 0.5).tolist()
    assert alerts.energy_rising([1.0 + n for n in noise]) is None
    rising = [1.0 + 0.01 * i + n * 0.1 for i, n in enumerate(noise)]
    alert = alerts.energy_rising(rising)
    assert alert is not None and alert.rule == "energy_rising" and "rose" in alert.message


def test_soc_too_fast():
    assert alerts.soc_too_fast([True] * 9 + [False]) is not None
    assert alerts.soc_too_fast([True, False] * 5) is None
    assert alerts.soc_too_fast([True] * 5) is None  # too few checks to judge


def test_validation_worse():
    assert alerts.validation_worse([100, 80, 70, 75, 76]) is not None
    assert alerts.validation_worse([100, 80, 70, 69, 71]) is None


def test_plateau_only_when_far_from_target():
    flat_high = [5.0] * 500
    assert alerts.plateau(flat_high, target=2.0) is not None
    assert alerts.plateau([2.1] * 500, target=2.0) is None
    assert alerts.plateau([5.0 - i * 0.004 for i in range(500)], target=2.0) is None


def test_non_finite():
    assert alerts.non_finite({"loss": float("nan"), "nll": 1.0}).rule == "nan"
    assert alerts.non_finite({"loss": 1.0}) is None


def test_log_reader_partial_and_corrupt_lines(tmp_path):
    path = tmp_path / "run.jsonl"
    log = RunLogger(path)
    log.log("meta", 0, 0, config={})
    log.log("batch", 1, 0, loss=float("nan"))
    reader = LogReader(path)
    assert [r["type"] for r in reader.read_new()] == ["meta", "batch"]
    assert reader.records[1]["loss"] is None  # NaN is written as null: valid JSON
    with open(path, "a") as fh:
        fh.write('{"v":1,"type":"batch","step":2')  # a half-written line
    assert reader.read_new() == []
    with open(path, "a") as fh:
        fh.write(',"epoch":0}\nnot json\n')
    new = reader.read_new()
    assert [r["step"] for r in new] == [2] and reader.corrupt_lines == 1
    path.write_text('{"type":"meta","step":0}\n')  # rewritten, shorter: read again from the start
    assert len(reader.read_new()) == 1 and len(reader.records) == 1


def test_checkpoint_atomic_retention_and_corruption(tmp_path):
    run = tmp_path / "run"
    for epoch in range(1, 8):
        save_checkpoint({"model": {}, "config": {}, "step": epoch}, run, epoch, keep_every=5, keep_last=2)
    assert sorted(p.name for p in run.glob("*.pt")) == ["ebm_epoch_5.pt", "ebm_epoch_6.pt", "ebm_epoch_7.pt", "latest.pt"]
    assert load_checkpoint(run)["step"] == 7
    assert not list(run.glob(".*.tmp"))
    data = (run / "latest.pt").read_bytes()
    (run / "latest.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(run)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"model": {}, "config": {}, "schema_version": 0}, run / "old.pt")
    with pytest.raises(CheckpointError, match="schema version 0"):
        load_checkpoint(run / "old.pt")
    assert prune_checkpoints(run, 5, 2) == []


def test_status_staleness(tmp_path):
    path = tmp_path / "status.json"
    status = write_status(path, "running", step=3)
    assert effective_state(status) == "running"
    assert effective_state(status, now=status["heartbeat"] + 1000) == "not responding"
    assert effective_state({**status, "pid": 2**22 + 12345}) == "not responding"
    assert effective_state(json.loads(path.read_text())) == "running"
    assert effective_state(None) == "unknown"


def test_windows_tile_targets_once():
    import numpy as np

    tokens = np.arange(100)
    w = Windows(tokens, history=5, targets=4)
    batch = w.batch(np.arange(len(w)))
    assert batch.shape == (len(w), 10)
    targets = batch[:, -4:].reshape(-1)
    assert len(set(targets.tolist())) == len(targets)  # no target twice
    assert (batch[:, 1:] - batch[:, :-1] == 1).all()  # contiguous text
    assert list(w.epoch_order(0, 1)) == list(w.epoch_order(0, 1))


def test_curriculum_phases():
    cfg = small_config(curriculum_boundaries=(2, 4), curriculum_capacities=(64, 128, 256))
    cur = Curriculum(cfg)
    assert [cur.phase(e, 0).name for e in (0, 1, 2, 3, 4, 9)] == ["init", "init", "mid", "mid", "max", "max"]
    assert cur.phase(3, 0).capacity == 128 and cur.phase(0, 0).temperature > cur.phase(4, 0).temperature
    flat = Curriculum(small_config(curriculum=False))
    assert flat.phase(9, 0).capacity == flat.cfg.n_splats_init


def test_detokenize():
    assert detokenize("the 1 @,@ 000 @-@ strong army , led by ( a ) man 's") == "the 1,000-strong army, led by (a) man's"
    assert detokenize(" = Title = \n") == " = Title =\n"
