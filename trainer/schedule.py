"""How long a run trains and at what learning rate."""

from __future__ import annotations

import math
from dataclasses import dataclass


def lr_factor(step: int, warmup: int, horizon: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0.1 at step `horizon`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, horizon - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Budget:
    """The run's end: the configured epochs, --max-steps and --max-minutes, whichever comes first.

    The learning-rate schedule spans the configured epochs, never --max-steps, so a run stopped
    early and resumed follows the same schedule as one that never stopped.
    """

    schedule_steps: int  # steps_per_epoch * epochs
    max_steps: int | None = None
    max_minutes: float | None = None  # optimiser-step time only: evaluation is not counted

    @property
    def planned_steps(self) -> int:
        return min(self.schedule_steps, self.max_steps) if self.max_steps else self.schedule_steps

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
