"""bench/rss.py: a benchmark child started from a large parent reports its own peak memory."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.rss import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
CHILD = (
    "import resource, sys; sys.path.insert(0, sys.argv[1]); from bench.rss import peak_rss_mb; "
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
