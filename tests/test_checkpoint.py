import pytest
import torch

from runs.checkpoint import CheckpointError, load_checkpoint, prune_checkpoints, save_checkpoint


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


def test_latest_is_the_epoch_snapshot_not_a_second_write(tmp_path):
    import os

    from runs.checkpoint import save_checkpoint

    state = {"model": {"w": torch.ones(3)}, "config": {}}
    path = save_checkpoint(state, tmp_path, epoch=1, keep_every=5, keep_last=1)
    assert os.path.samefile(path, tmp_path / "latest.pt")
    save_checkpoint({**state, "step": 2}, tmp_path, epoch=2, keep_every=5, keep_last=1)  # prunes epoch 1
    assert not path.exists() and load_checkpoint(tmp_path / "latest.pt")["step"] == 2
