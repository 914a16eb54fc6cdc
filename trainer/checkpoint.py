"""Checkpoints: `ebm_epoch_N.pt` snapshots plus `latest.pt` for resume, written atomically.

A checkpoint holds everything resume needs (model incl. splat store and statistics, optimiser,
scheduler, SOC state, config, tokenizer id, RNG states, data position, step, epoch) and a
schema version. Retention keeps every `keep_every`-th epoch plus the last `keep_last`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ebm.config import EBMConfig

from .files import atomic_write
from .runfiles import SCHEMA_VERSION, CheckpointError, list_checkpoints

__all__ = ["CheckpointError", "load_checkpoint", "model_from_checkpoint", "prune_checkpoints", "save_checkpoint"]


def save_checkpoint(state: dict, run_dir: Path, epoch: int | None, keep_every: int, keep_last: int) -> Path:
    """Write latest.pt (and ebm_epoch_N.pt when epoch is given); returns the main path."""
    state = {**state, "schema_version": SCHEMA_VERSION}
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / (f"ebm_epoch_{epoch}.pt" if epoch is not None else "latest.pt")
    atomic_write(target, lambda fh: torch.save(state, fh))
    if epoch is not None:
        atomic_write(run_dir / "latest.pt", lambda fh: torch.save(state, fh))
        prune_checkpoints(run_dir, keep_every, keep_last)
    return target


def prune_checkpoints(run_dir: Path, keep_every: int, keep_last: int) -> list[Path]:
    snapshots = list_checkpoints(run_dir)
    last = {e for e, _ in snapshots[-keep_last:]} if keep_last else set()
    removed = []
    for epoch, path in snapshots:
        if epoch % keep_every != 0 and epoch not in last:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def load_checkpoint(path: str | Path) -> dict:
    """Load and check a checkpoint; raises CheckpointError with a one-line reason."""
    path = Path(path)
    if path.is_dir():
        path = path / "latest.pt"
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path} is corrupt or truncated ({type(err).__name__}); use an earlier ebm_epoch_N.pt") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not an ebm checkpoint")
    version = state.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CheckpointError(f"{path} has schema version {version}, this ebm-lab reads version {SCHEMA_VERSION}")
    return state


def model_from_checkpoint(state: dict):
    """Rebuild an EBMModel from a loaded checkpoint alone."""
    from ebm import EBMModel

    cfg = EBMConfig.from_dict(state["config"])
    model = EBMModel(cfg, n_splats=state["model"]["splats.mu_raw"].shape[0])
    model.load_state_dict(state["model"], strict=True)
    model.eval()
    return model
