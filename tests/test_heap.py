import ctypes
import sys
from pathlib import Path

import pytest

from trainer import heap


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux") or heap._malloc_trim() is None, reason="glibc only")
def test_release_free_heap_returns_freed_pages_below_a_live_block():
    # Blocks under the mmap threshold live in the heap; the live block on top keeps free()
    # from trimming them, which is how a training step's temporaries pile up.
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size, count = 64 * 1024, 3000  # 192 MB
    blocks = [libc.malloc(size) for _ in range(count)]
    for b in blocks:
        ctypes.memset(b, 1, size)
    for b in blocks[:-1]:
        libc.free(b)
    before = _rss_mb()
    assert heap.release_free_heap() is True
    after = _rss_mb()
    libc.free(blocks[-1])
    assert before - after > 100, (before, after)


def test_release_free_heap_is_a_no_op_without_malloc_trim(monkeypatch):
    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)
    assert heap.release_free_heap() is False
