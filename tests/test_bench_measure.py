"""bench/measure.py: peak memory of a child is its own; step timing runs real optimiser steps."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.measure import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
CHILD = (
    "import resource, sys; sys.path.insert(0, sys.argv[1]); from bench.measure import peak_rss_mb; "
    "print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
)


def test_peak_counts_this_process_and_not_its_parent():
    big = np.ones(600 * 2**20 // 8)  # 600 MB, every page touched
    assert peak_rss_mb() >= 600
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], capture_output=True, text=True, check=True)
    child_peak, child_maxrss = map(float, out.stdout.split())
    assert child_peak < 200, child_peak  # a bare interpreter
    assert child_maxrss >= 600 or sys.platform != "linux", child_maxrss  # why ru_maxrss is not used
    del big


def test_training_step_times_runs_real_optimiser_steps():
    import torch

    from bench.measure import training_step_times
    from ebm import EBMModel, small_config, training_loss

    torch.manual_seed(0)
    model = EBMModel(small_config())
    before = [p.detach().clone() for p in model.parameters()]
    times = training_step_times(model, 2, torch.Generator().manual_seed(0), training_loss)
    assert len(times) == 3 and all(t > 0 for t in times)  # a warm-up and two timed steps
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
