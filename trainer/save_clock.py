"""When the training loop writes a checkpoint between epochs: every checkpoint_minutes of wall
time, the first after a fifth of that, so the dashboard has a model to open within minutes and
a long epoch is not an hour without one."""

from __future__ import annotations

import time


class SaveClock:
    def __init__(self, minutes: float, clock=time.monotonic):
        self.minutes, self.clock = minutes, clock
        self.last, self.saves = clock(), 0  # checkpoints written by this process

    def next_in(self) -> float | None:
        """Seconds until the next clock checkpoint (None when they are off)."""
        if self.minutes <= 0:
            return None
        gap = self.minutes / 5 if self.saves == 0 else self.minutes
        return 60 * gap - (self.clock() - self.last)

    def due(self) -> bool:
        due = self.next_in()
        return due is not None and due <= 0

    def saved(self) -> None:
        self.last = self.clock()
        self.saves += 1
