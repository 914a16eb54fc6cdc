"""Peak resident memory of the calling process."""

from __future__ import annotations

import resource
from pathlib import Path


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
