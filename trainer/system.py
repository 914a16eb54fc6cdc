"""Process resource use for the logs: resident memory, CPU cores kept busy, and the GPU's peak
memory on CUDA. Read only at log intervals; nothing here syncs a device or imports torch
unless the run is on CUDA."""

from __future__ import annotations

import os
import resource
import sys
import time


def _lifetime_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB; None without /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def resident_mb() -> float:
    """Current resident set size in MiB, as /proc/<pid>/status's VmRSS says (the lifetime peak
    where /proc is missing, e.g. on macOS)."""
    now = _status_mb("VmRSS")
    return _lifetime_peak_mb() if now is None else now


def interval_peak_mb() -> float:
    """The peak resident set size since the previous call, in MiB: VmHWM, then reset (writing 5
    to /proc/self/clear_refs), because a step's activations are freed before the log reads the
    current RSS, which then shows about half of what the step held. The lifetime peak where the
    reset is not allowed or /proc is missing."""
    peak = _status_mb("VmHWM")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _lifetime_peak_mb() if peak is None else peak


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class SystemMeter:
    """`read()` gives the process's use since the previous read: cpu_cores = CPU seconds per wall
    second (2.0: two cores busy), rss_mb now, rss_peak_mb since the previous read, and
    gpu_peak_mb on CUDA."""

    def __init__(self, device: str = "cpu"):
        self.cuda = str(device).startswith("cuda")
        self._wall, self._cpu = time.monotonic(), cpu_seconds()

    def read(self) -> dict[str, float]:
        wall, cpu = time.monotonic(), cpu_seconds()
        busy = (cpu - self._cpu) / max(wall - self._wall, 1e-9)
        self._wall, self._cpu = wall, cpu
        out = {"cpu_cores": round(busy, 3), "rss_mb": round(resident_mb(), 1), "rss_peak_mb": round(interval_peak_mb(), 1)}
        if self.cuda:
            import torch

            out["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out
