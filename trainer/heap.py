"""Return freed heap memory to the operating system between training steps.

A training step frees dozens of temporaries of a few MB each. glibc keeps them in its heap, and
when the next step asks for sizes that do not fit the holes, the heap grows: a default-config run
grew from 2.3 to 4.5 GB of RSS in 9 minutes while its working set stayed near 1.4 GB.
`malloc_trim(0)` after each step gives the free pages back; it costs less than the noise of a
step (docs/design-notes.md, "Heap growth").
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache


@cache
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


def release_free_heap() -> bool:
    """Hand the heap's free pages back to the OS; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
