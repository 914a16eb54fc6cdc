"""The resource numbers the trainer logs: cores kept busy and resident memory."""

import time

import numpy as np
import pytest

from trainer.system import SystemMeter, resident_mb


def test_busy_cpu_reads_as_about_one_core_and_sleep_as_none():
    meter = SystemMeter()
    end = time.monotonic() + 0.4
    while time.monotonic() < end:  # one thread spinning
        pass
    assert meter.read()["cpu_cores"] == pytest.approx(1.0, abs=0.35)
    time.sleep(0.4)
    assert meter.read()["cpu_cores"] < 0.3


def test_resident_memory_grows_by_what_is_allocated_and_touched():
    before = resident_mb()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, written so the pages are resident
    assert resident_mb() - before == pytest.approx(64, abs=16)
    del block


def test_cpu_runs_report_no_gpu_memory():
    assert set(SystemMeter("cpu").read()) == {"cpu_cores", "rss_mb"}
