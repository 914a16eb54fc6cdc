"""One writer per run: an advisory lock on <run_dir>/run.lock that holds the owner's pid.

The operating system drops the lock when its process dies, however it dies, so a lock left
by a killed trainer is taken over by the next one (with a message naming the dead pid), and
a second live trainer on the same run id is refused before it writes anything.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class RunLockedError(RuntimeError):
    """Another live process writes this run."""


class RunLock:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "run.lock"
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; returns a notice when it was left by a process that is gone."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        previous = os.read(fd, 32).decode(errors="replace").strip()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = f"pid {previous}" if previous else "another process"
            raise RunLockedError(
                f"run {self.path.parent.name} is being written by {owner}; stop it first or choose another --run-id"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        if previous and previous != str(os.getpid()):
            return f"took over the lock of run {self.path.parent.name} from pid {previous}, which is no longer running"
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
