"""The resource numbers the trainer logs: cores kept busy and resident memory."""

import mmap
import os
import time

import pytest

from trainer.system import SystemMeter, interval_peak_mb, resident_mb


def test_busy_cpu_reads_as_about_one_core_and_sleep_as_none():
    meter = SystemMeter()
    end = time.monotonic() + 0.4
    while time.monotonic() < end:  # one thread spinning
        pass
    assert meter.read()["cpu_cores"] == pytest.approx(1.0, abs=0.35)
    time.sleep(0.4)
    assert meter.read()["cpu_cores"] < 0.3


def _touched_mapping(mib: int) -> mmap.mmap:
    """A fresh anonymous mapping with every page written, so all of it is resident. Not np.ones:
    late in a long test process malloc can hand back pages that are already resident (and keep
    them after a free), and then nothing grows or shrinks."""
    block = mmap.mmap(-1, mib * 2**20)
    for page in range(0, len(block), mmap.PAGESIZE):
        block[page] = 1
    return block


def test_resident_memory_grows_by_what_is_allocated_and_touched():
    before = resident_mb()
    with _touched_mapping(64):
        assert resident_mb() - before == pytest.approx(64, abs=16)


def test_cpu_runs_report_no_gpu_memory():
    assert set(SystemMeter("cpu").read()) == {"cpu_cores", "rss_mb", "rss_peak_mb"}


def _vm_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_resident_memory_is_what_proc_status_says():
    assert resident_mb() == pytest.approx(_vm_rss_mb(), rel=0.02)


def test_the_peak_since_the_last_read_holds_memory_freed_before_the_read():
    """A step's activations are freed before the log reads: the peak still shows them, and the
    next interval's peak forgets them."""
    interval_peak_mb()
    _touched_mapping(256).close()
    now, peak = resident_mb(), interval_peak_mb()
    assert peak - now >= 200
    if os.access("/proc/self/clear_refs", os.W_OK):  # where the kernel lets a process reset its peak
        assert interval_peak_mb() - resident_mb() < 100  # the old peak is gone
