"""Process-wide settings that must come before torch starts working; applied on import of ebm.

OpenMP waiting: torch's OpenMP threads spin while idle by default. Beside numba's parallel
kernels, or another process (the trainer next to the dashboard), the spinning starved them:
20 steps of the tests' tiny run took 46 s instead of 0.8 s. Passive waiting must be chosen
before torch loads.

glibc malloc: a training step allocates (N, V) tensors of 200 MB and more, which glibc serves
with fresh mmap()s and returns on free, so every step faults in gigabytes of new pages. Keeping
them in the heap took the default step from 5.2 s to 2.0 s on this project's 2-core VM, for
about 0.8 GB more peak RSS (docs/design-notes.md section 9). Set EBM_MALLOC=default to opt out.
"""

from __future__ import annotations

import ctypes
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_KEEP_BYTES = 2**31 - 1  # mallopt takes an int: allocations below 2 GiB come from the heap


def wait_passively() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from its heap and keep freed pages; False where that
    does not apply (another C library, or EBM_MALLOC=default)."""
    if os.environ.get("EBM_MALLOC", "") == "default":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))


def configure() -> None:
    wait_passively()
    keep_freed_memory()
