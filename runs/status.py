"""status.json of a run: pid, state (running / stopped / finished / crashed) and heartbeat.
No torch here. A 'running' run whose heartbeat is older than `stale_after` seconds, or whose
pid is gone, is reported as not responding."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .files import atomic_write_json

STATES = ("starting", "running", "stopped", "finished", "crashed")


def write_status(path: str | Path, state: str, **fields) -> dict:
    if state not in STATES:
        raise ValueError(f"unknown run state {state!r}")
    data = {"state": state, "pid": os.getpid(), "heartbeat": time.time(), **fields}
    atomic_write_json(path, data)
    return data


def read_status(path: str | Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_state(status: dict | None, stale_after: float = 120.0, now: float | None = None) -> str:
    """What to show a user: a running run with a stale heartbeat or a dead pid is not responding."""
    if status is None:
        return "unknown"
    state = status.get("state", "unknown")
    if state in ("running", "starting"):
        age = (now or time.time()) - float(status.get("heartbeat", 0))
        pid = status.get("pid")
        if age > stale_after or (isinstance(pid, int) and not pid_alive(pid)):
            return "not responding"
    return state


class Heartbeat:
    """Writes status.json at most every `every` seconds unless forced."""

    def __init__(self, path: str | Path, every: float = 5.0):
        self.path, self.every = Path(path), every
        self._last = 0.0

    def beat(self, state: str = "running", force: bool = False, **fields) -> None:
        now = time.time()
        if force or now - self._last > self.every:
            write_status(self.path, state, **fields)
            self._last = now
