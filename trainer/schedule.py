"""How long a run trains and at what learning rate."""

from __future__ import annotations

import math
from dataclasses import dataclass


def lr_factor(step: int, warmup: int, progress: float) -> float:
    """Linear warm-up over `warmup` steps, times a cosine from 1 down to 0.1 over the run's
    budget (`progress` from 0 to 1): the schedule ends where the run ends, however short."""
    warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress)))))


@dataclass(frozen=True)
class Budget:
    """The run's end: the configured epochs, --max-steps and --max-minutes, whichever comes first.
    The learning-rate schedule spans this budget, so a 10-minute run decays within its 10 minutes;
    a run resumed with the same flags follows the same schedule as one that never stopped."""

    epoch_steps: int  # steps_per_epoch * epochs
    max_steps: int | None = None
    max_minutes: float | None = None  # optimiser-step time only: evaluation is not counted

    @property
    def planned_steps(self) -> int:
        return min(self.epoch_steps, self.max_steps) if self.max_steps else self.epoch_steps

    def progress(self, step: int, train_seconds: float) -> float:
        """Share of the budget spent (0 to 1): steps or training time, whichever is further."""
        shares = [step / max(1, self.planned_steps)]
        if self.max_minutes:
            shares.append(train_seconds / (60 * self.max_minutes))
        return min(1.0, max(shares))

    def allows(self, step: int, train_seconds: float) -> bool:
        in_time = self.max_minutes is None or train_seconds < 60 * self.max_minutes
        return step < self.planned_steps and in_time


def is_eval_step(step: int, interval: int, first_interval: int) -> bool:
    """Evaluate at step 0, then early at first, 3 first, 7 first, ... (doubling gaps) before step
    `interval`, then every `interval` steps: learning shows in the first minutes."""
    if step == 0 or step % interval == 0:
        return True
    gap, at = first_interval, first_interval
    while 0 < gap < interval and at < min(interval, step + 1):
        if at == step:
            return True
        gap *= 2
        at += gap
    return False
