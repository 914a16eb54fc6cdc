"""Checkpoints: `ebm_epoch_N.pt` snapshots plus `latest.pt` for resume, written atomically.

A checkpoint holds everything resume needs (model incl. splat store and statistics, optimiser,
SOC state, config, tokenizer id, RNG states, data position, step, epoch), the
schema version and a digest of its content. Loading never runs code from the file (torch's
`weights_only` unpickler: tensors, numbers, strings and containers only) and checks the
digest, so a flipped byte is an error that names the last good checkpoint, not a silently
different model. Retention keeps every `keep_every`-th epoch plus the last `keep_last`. torch loads on the first
checkpoint read or written, never at import: the dashboard's light pages list runs without it.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from pathlib import Path

from .digest import DIGEST_KEY, content_digest
from .export_format import load_export
from .files import atomic_write
from .runfiles import EXPORT_WEIGHTS, SCHEMA_VERSION, CheckpointError, checkpoints_of, list_checkpoints

__all__ = [
    "CheckpointError",
    "content_digest",
    "newest_intact",
    "load_checkpoint",
    "model_from_checkpoint",
    "prune_checkpoints",
    "save_checkpoint",
]


def save_checkpoint(state: dict, run_dir: Path, epoch: int | None, keep_every: int, keep_last: int) -> Path:
    """Write latest.pt (and ebm_epoch_N.pt when epoch is given); returns the main path."""
    state = {**state, "schema_version": SCHEMA_VERSION}
    state[DIGEST_KEY] = content_digest(state)
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / (f"ebm_epoch_{epoch}.pt" if epoch is not None else "latest.pt")
    atomic_write(target, lambda fh: _torch_save(state, fh, target))
    if epoch is not None:
        link_latest(target)
        prune_checkpoints(run_dir, keep_every, keep_last)
    return target


def _torch_save(state: dict, fh, target: Path) -> None:
    """torch.save, whose zip writer reports a full disk as a RuntimeError ("unexpected pos"):
    raised as the OSError it is, so every caller's one-line handling of write errors applies."""
    import torch

    try:
        torch.save(state, fh)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise OSError(errno.EIO, f"the write failed, the disk may be full ({first})", str(target)) from None


def link_latest(snapshot: Path) -> None:
    """Point latest.pt at an epoch snapshot without writing it twice: a hard link, swapped in
    atomically (pruning the snapshot later leaves latest.pt intact). A copy where links fail."""
    latest = snapshot.parent / "latest.pt"
    tmp = snapshot.parent / f".latest.pt.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(snapshot, tmp)
    except OSError:
        shutil.copyfile(snapshot, tmp)
    os.replace(tmp, latest)


def prune_checkpoints(run_dir: Path, keep_every: int, keep_last: int) -> list[Path]:
    snapshots = list_checkpoints(run_dir)
    last = {e for e, _ in snapshots[-keep_last:]} if keep_last else set()
    removed = []
    for epoch, path in snapshots:
        if epoch % keep_every != 0 and epoch not in last:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


UNVERIFIED_ENV = "EBM_ACCEPT_UNVERIFIED"  # "1": load checkpoints that carry no digest (an explicit choice)


def load_checkpoint(path: str | Path) -> dict:
    """Load and verify a checkpoint; raises CheckpointError with a one-line reason that names
    the newest intact checkpoint of the same run."""
    path = Path(path)
    if (path / EXPORT_WEIGHTS).exists():
        return load_export(path)
    if path.is_dir():
        path = path / "latest.pt"
    try:
        return _load_verified(path)
    except CheckpointError as err:
        good, _, _ = newest_intact(path.parent, exclude=path)
        hint = f"; the last good checkpoint is {good}" if good else ""
        raise CheckpointError(f"{err}{hint}") from None


def _load_verified(path: Path) -> dict:
    import torch

    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # the weights-only unpickler's refusal, or bytes that are no pickle
        code = next((ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln), None)
        if code is None:
            raise CheckpointError(f"{path} is corrupt or truncated (not a checkpoint's pickle)") from None
        raise CheckpointError(f"{path} holds more than tensors and plain values and was not loaded: {code[:200]}") from None
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path} is corrupt or truncated ({type(err).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not an ebm checkpoint")
    version = state.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CheckpointError(f"{path} has schema version {version!r}, this ebm-lab reads version {SCHEMA_VERSION} (a number)")
    stored = state.pop(DIGEST_KEY, None)
    if stored is None and os.environ.get(UNVERIFIED_ENV) != "1":
        raise CheckpointError(
            f"{path} has no digest, so its content cannot be verified (edited, or written by an older "
            f"ebm-lab): set {UNVERIFIED_ENV}=1 to load it anyway"
        )
    if stored is not None and stored != content_digest(state):
        raise CheckpointError(f"{path} is damaged: its content does not match its digest")
    return state


def checkpoints_by_age(run_dir: Path) -> list[Path]:
    """The run's checkpoint files, newest first by modification time (latest.pt first on a tie)."""
    files = [p for p in checkpoints_of(run_dir) if p.suffix == ".pt"]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name == "latest.pt"), reverse=True)


def newest_intact(run_dir: Path, exclude: Path | None = None) -> tuple[Path | None, dict | None, list[str]]:
    """The newest checkpoint of the run that loads and verifies, its state, and why each newer
    one did not; (None, None, reasons) when none does."""
    problems: list[str] = []
    for path in checkpoints_by_age(run_dir):
        if exclude is not None and path.resolve() == exclude.resolve():
            continue
        try:
            return path, _load_verified(path), problems
        except CheckpointError as err:
            problems.append(str(err))
    return None, None, problems


def model_from_checkpoint(state: dict):
    """Rebuild an EBMModel from a loaded checkpoint alone."""
    from ebm import EBMModel
    from ebm.config import EBMConfig

    try:
        cfg = EBMConfig.from_saved(state["config"])
        model = EBMModel(cfg, n_splats=state["model"]["splats.mu_raw"].shape[0])
        model.load_state_dict(state["model"], strict=True)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:  # ConfigError is a ValueError
        first = str(err).strip().splitlines()[0][:200]
        raise CheckpointError(f"the checkpoint's tensors do not match its config: {first}") from None
    model.eval()
    return model
