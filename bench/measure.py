"""What the benchmark workers measure: training step times and peak resident memory.

Nothing here imports ebm, so bench/before_after.py can time another commit's model with it.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported by the caller; the memory probe stays light
    import torch


def training_step_times(
    model: torch.nn.Module, steps: int, generator: torch.Generator, loss_fn: Callable[..., Any]
) -> list[float]:
    """Seconds of `steps` + 1 default training steps (forward, backward, AdamW) on random
    windows; the first is a warm-up, so callers take the median of the rest. `loss_fn(model,
    tokens, generator)` returns an object with `.loss` (ebm.objective.training_loss)."""
    import torch

    from trainer.heap import release_free_heap  # as the trainer does after every step

    cfg = model.cfg
    opt = torch.optim.AdamW(model.parameter_groups(), lr=cfg.learning_rate)
    length = cfg.context_global + cfg.seq_length + 1  # older commits: history + targets; now seq_length <= context
    times = []
    for _ in range(steps + 1):
        tokens = torch.randint(cfg.vocab_size, (cfg.batch_size, length), generator=generator)
        t = time.perf_counter()
        out = loss_fn(model, tokens, generator)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        release_free_heap()
        times.append(time.perf_counter() - t)
    return times


def peak_rss_mb() -> float:
    """This process's peak RSS in MB.

    Linux's VmHWM belongs to the address space, which exec replaces, so a benchmark child started
    from a large parent reports its own peak. ru_maxrss, the fallback, keeps the parent's peak
    across fork + exec and so overstates small children.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
