"""Process resource use for the logs: resident memory, CPU cores kept busy, and the GPU's peak
memory on CUDA. Read only at log intervals; nothing here syncs a device or imports torch
unless the run is on CUDA."""

from __future__ import annotations

import os
import resource
import sys
import time

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_mb() -> float:
    """Current resident set size in MiB (the peak where /proc is missing, e.g. on macOS)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class SystemMeter:
    """`read()` gives the process's use since the previous read: cpu_cores = CPU seconds per wall
    second (2.0: two cores busy), rss_mb now, and gpu_peak_mb on CUDA."""

    def __init__(self, device: str = "cpu"):
        self.cuda = str(device).startswith("cuda")
        self._wall, self._cpu = time.monotonic(), cpu_seconds()

    def read(self) -> dict[str, float]:
        wall, cpu = time.monotonic(), cpu_seconds()
        busy = (cpu - self._cpu) / max(wall - self._wall, 1e-9)
        self._wall, self._cpu = wall, cpu
        out = {"cpu_cores": round(busy, 3), "rss_mb": round(resident_mb(), 1)}
        if self.cuda:
            import torch

            out["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out
