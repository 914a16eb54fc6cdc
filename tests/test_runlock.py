import os
import subprocess
import sys

import pytest

from runs.runlock import RunLock, RunLockedError

HOLD = (
    "import sys, time; from runs.runlock import RunLock; "
    "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"
)


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    # killed with -9: the lock died with it, and the next writer says whose lock it took over
    lock = RunLock(tmp_path)
    assert f"from pid {holder.pid}" in lock.acquire()
    assert (tmp_path / "run.lock").read_text().strip() == str(os.getpid())
    lock.release()
    assert RunLock(tmp_path).acquire() is None  # released cleanly: nothing to report
