"""Atomic file writes: temp file in the same folder, fsync, os.replace. A reader never sees a
half-written file, and a killed writer leaves the previous version intact."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide checkpoints and exports from the user's group
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: dict) -> None:
    atomic_write(path, lambda fh: fh.write(json.dumps(data, indent=2, sort_keys=True)), mode="w")


def atomic_folder(path: str | Path, fill: Callable[[Path], None]) -> None:
    """Write a whole folder: fill() writes into a hidden sibling, which then takes the folder's
    place. A kill at any point leaves the previous folder or the new one at `path`, or the previous
    one parked beside it, which restore_folder() puts back; never a mix of the two."""
    path = Path(path)
    restore_folder(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def restore_folder(path: str | Path) -> None:
    """Undo what a killed atomic_folder() left: its unfinished temp folders go, and a parked
    previous folder returns when nothing took its place."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    old = path.with_name(f".{path.name}.old")
    if old.exists():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, path)
