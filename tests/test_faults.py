"""Faults injected into real trainer, evaluator and diagnose processes: malicious and damaged
checkpoints, kills during writes, a second writer, resume at every kind of boundary."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import child_env, records, train, train_command

from runs.checkpoint import load_checkpoint
from runs.runfiles import RunFiles, missing_fields

pytestmark = pytest.mark.slow


def cli(ws: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    env = child_env(EBM_CACHE=str(ws / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "commands", command, *args], cwd=ws, env=env, capture_output=True, text=True, timeout=300
    )


def one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


class Payload:
    """Unpickling this runs a shell command: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def small_run(workspace):
    """A finished run of 12 steps with one epoch snapshot, copied fresh for each test."""
    src = RunFiles.under(workspace / "faults-src", "r")  # copies keep the run's own id: resume checks it
    if not src.latest.exists():
        proc = train(workspace, "--run-id", "r", "--max-steps", "12", "--out", str(workspace / "faults-src"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        shutil.copy2(src.latest, src.epoch_checkpoint(1))  # the same state, and not newer than latest.pt
    ws = workspace / f"copy-{time.monotonic_ns()}"
    for sub in ("logs/ebm", "checkpoints"):
        (ws / sub).mkdir(parents=True)
    shutil.copytree(src.run_dir, ws / "checkpoints" / "r")
    shutil.copy(src.log, ws / "logs" / "ebm" / "r.jsonl")
    for name in ("corpus.txt", "tiny.json"):
        shutil.copy(workspace / name, ws / name)
    shutil.copytree(workspace / "cache", ws / "cache", dirs_exist_ok=True)
    return ws, RunFiles.under(ws, "r")


def test_a_checkpoint_that_would_run_code_is_refused_everywhere(small_run):
    ws, files = small_run
    marker = ws / "pwned"
    torch.save({"model": Payload(marker), "config": {}, "schema_version": 1}, files.latest)
    os.utime(files.latest)  # the newest file of the run
    for command, args in (
        ("evaluate", ["--checkpoint", str(files.latest), "--data", "corpus.txt"]),
        ("diagnose", ["--checkpoint", str(files.latest)]),
        ("diagnose", ["--batch", "--run-id", "r", "--out", str(ws)]),
    ):
        proc = cli(ws, command, *args)
        assert not marker.exists(), command
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    proc = train(ws, "--resume", "r", "--max-steps", "14")
    assert not marker.exists()
    assert proc.returncode == 0 and "resuming from ebm_epoch_1.pt" in proc.stderr, proc.stderr[-2000:]


def test_a_flipped_byte_names_the_last_good_checkpoint(small_run):
    ws, files = small_run
    data = bytearray(files.latest.read_bytes())
    data[len(data) // 2] ^= 0x01
    files.latest.write_bytes(bytes(data))
    proc = cli(ws, "evaluate", "--checkpoint", str(files.latest), "--data", "corpus.txt")
    one_line_error(proc, "the last good checkpoint is")
    assert "ebm_epoch_1.pt" in proc.stderr


def test_resume_uses_an_epoch_file_written_just_before_a_kill(small_run):
    """Killed between writing ebm_epoch_N.pt and latest.pt: the epoch file is the newest state."""
    ws, files = small_run
    state = load_checkpoint(files.latest)
    old = time.time() - 60
    os.utime(files.latest, (old, old))
    proc = train(ws, "--resume", "r", "--max-steps", "13")
    assert proc.returncode == 0 and "resuming from ebm_epoch_1.pt" in proc.stderr, proc.stderr[-2000:]
    assert load_checkpoint(files.latest)["step"] == state["step"] + 1


def test_a_second_writer_on_a_live_run_is_refused(small_run):
    ws, files = small_run
    env = child_env(EBM_CACHE=str(ws / "cache"))
    first = subprocess.Popen(
        [sys.executable, "-m", "commands", "train", "--resume", "r", "--quiet", "--max-steps", "100000"],
        cwd=ws,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and f"{first.pid}" not in (files.run_dir / "run.lock").read_text():
            time.sleep(0.2)
        proc = train(ws, "--resume", "r", "--max-steps", "100000")
        one_line_error(proc, f"is being written by pid {first.pid}")
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(60)
    assert [r["type"] for r in records(ws, "r")].count("resume") == 1  # the refused one wrote nothing


def test_kill_9_during_writes_leaves_only_loadable_checkpoints(small_run):
    ws, files = small_run
    env = child_env(EBM_CACHE=str(ws / "cache"))
    cmd = [sys.executable, "-m", "commands", "train", "--resume", "r", "--quiet", "--max-steps", "100000"]
    for delay in (1.5, 2.5, 3.5, 4.5):
        proc = subprocess.Popen(cmd, cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)  # starts a checkpoint write ...
        time.sleep(0.05 * delay)
        proc.kill()  # ... and dies somewhere inside it
        proc.wait()
        for path in files.run_dir.glob("*.pt"):
            load_checkpoint(path)  # every checkpoint that exists is whole
    (files.run_dir / ".latest.pt.k9x2.tmp").write_bytes(b"half a checkpoint")  # as a kill mid-write leaves one
    proc = train(ws, "--resume", "r", "--max-steps", "100000", "--max-minutes", "0.01")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not list(files.run_dir.glob(".*.tmp"))  # leftovers of the kills are cleared at start
    reader_records = records(ws, "r")  # asserts no corrupt line
    steps = [r["step"] for r in reader_records if r["type"] == "batch"]
    assert steps == sorted(set(steps))  # replayed steps after each resume are dropped by the reader


def test_unwritable_output_is_one_line(workspace):
    proc = train(workspace, "--run-id", "ro", "--out", "/proc/ebm-lab-cannot-write-here", "--max-steps", "2")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "cannot write" in proc.stderr or "error" in proc.stderr


def test_resume_refuses_changes_to_the_run(small_run):
    ws, _ = small_run
    one_line_error(train(ws, "--resume", "r", "--set", "knn_k=4"), "--set cannot change it")
    one_line_error(train(ws, "--resume", "r", "--data", "builtin"), "drop --data")


# The schedule spans the budget, and the resumed leg gets a longer one; a fixed schedule keeps
# the learning rates of both runs equal, as a user who plans to extend a run would set it.
FIXED_SCHEDULE = ("--set", "schedule_steps=170")


@pytest.mark.parametrize(
    "split",
    [
        20,  # right after an SOC avalanche (soc_check_interval 10, threshold 0: every check edits the store)
        37,  # mid-epoch, between checks and neighbour refreshes
        155,  # the last step of epoch 0: the next step enters phase "mid" and grows the store
    ],
)
def test_resume_is_bit_identical_at_every_kind_of_boundary(workspace, split):
    straight = RunFiles.under(workspace, "exact-straight")
    if not straight.latest.exists():
        assert train(workspace, "--run-id", "exact-straight", "--max-steps", "170", *FIXED_SCHEDULE).returncode == 0
    run_id = f"exact-{split}"
    assert train(workspace, "--run-id", run_id, "--max-steps", str(split), *FIXED_SCHEDULE).returncode == 0
    proc = train(workspace, "--resume", run_id, "--max-steps", "170")
    assert proc.returncode == 0, proc.stderr[-2000:]

    def after_split(run):
        keep = ("batch", "soc", "phase", "eval", "epoch")
        drop = ("t", "train_seconds", "tokens_per_s", "cpu_cores", "rss_mb", "rss_peak_mb")  # clocks and the machine's state
        return [
            {k: v for k, v in r.items() if k not in drop}
            for r in records(workspace, run)
            if r["type"] in keep and (r["step"] > split or r["type"] == "phase" and r["step"] == split)
        ]

    a, b = after_split("exact-straight"), after_split(run_id)
    assert len(a) == len(b) and any(r["type"] == "soc" for r in a)
    for x, y in zip(a, b):
        assert x == y, (split, x["type"], x["step"], {k: (x.get(k), y.get(k)) for k in x if x.get(k) != y.get(k)})
    if split == 155:  # the phase change fell to the resumed process, and it made it
        assert any(r["type"] == "phase" and r["name"] == "mid" for r in b)


POISON = """
import sys, torch
import trainer.trainer as loop
real = loop.training_loss

def poisoned(*args, **kwargs):  # every step of this process is non-finite
    out = real(*args, **kwargs)
    nan = torch.tensor(float("nan"))
    return out._replace(loss=out.loss * nan, metrics={**out.metrics, "loss": nan})

loop.training_loss = poisoned
from commands.cli import train
sys.exit(train(sys.argv[1:]))
"""


def test_recovery_from_non_finite_steps_is_bounded(small_run):
    ws, files = small_run
    env = child_env(EBM_CACHE=str(ws / "cache"))
    args = ["--resume", "r", "--out", str(ws), "--quiet", "--max-steps", "100"]
    proc = subprocess.run([sys.executable, "-c", POISON, *args], cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    rules = [r["rule"] for r in records(ws, "r") if r["type"] == "alert"]
    assert not [missing_fields(r) for r in records(ws, "r") if r["type"] == "alert" and missing_fields(r)]
    assert rules.count("rollback") == 2 and rules.count("nan_stop") == 1 and rules.count("nan") == 9, rules
    assert records(ws, "r")[-1]["state"] == "stopped"
    assert load_checkpoint(files.latest)["rollbacks"] == 2  # the count survives in the state it stopped with


def wait_until_torch_loads(pid: int, timeout: float = 60.0) -> None:
    """Until the process maps libtorch: then ebm-train's own code runs. A fixed delay alone can
    land, on a busy machine, inside the interpreter's start-up, where Python itself handles Ctrl-C."""
    maps, deadline = Path(f"/proc/{pid}/maps"), time.time() + timeout
    while time.time() < deadline and "libtorch" not in maps.read_text():
        time.sleep(0.01)


@pytest.mark.parametrize("delay", [0.0, 1.2])  # while torch loads; while the data and model are built
def test_ctrl_c_during_start_up_is_one_line(workspace, delay):
    cmd, env = train_command(workspace, "--run-id", f"int-{delay}")
    # A terminal's Ctrl-C meets the default disposition. Under a non-interactive shell's `&` the
    # suite inherits SIGINT ignored (POSIX), and so would the child: the signal would be dropped.
    default_sigint = partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    proc = subprocess.Popen(cmd, cwd=workspace, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    wait_until_torch_loads(proc.pid)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    if proc.returncode == 0:  # this machine got to training first: then Ctrl-C stops the run cleanly
        assert "stopped" in err
        return
    assert proc.returncode == 130 and err.strip() == "ebm-train: interrupted while starting; no training step was taken", err


DISK_FULL = """
import errno, sys
import torch

def full(*args, **kwargs):  # the disk fills up during the large write; small status writes still fit
    raise OSError(errno.ENOSPC, "No space left on device")

torch.save = full  # runs.checkpoint imports torch when it saves, and finds this one
from commands.cli import train
sys.exit(train(sys.argv[1:]))
"""


# torch's zip writer reports ENOSPC in the middle of a file as a RuntimeError, not an OSError
ZIP_WRITER_FULL = DISK_FULL.replace(
    'raise OSError(errno.ENOSPC, "No space left on device")',
    'raise RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 3456 vs 3392")',
)


@pytest.mark.parametrize("script,said", [(DISK_FULL, "No space left on device"), (ZIP_WRITER_FULL, "the disk may be full")])
def test_a_full_disk_stops_with_one_line_and_a_crashed_state(small_run, script, said):
    ws, files = small_run
    before = files.latest.read_bytes()
    env = child_env(EBM_CACHE=str(ws / "cache"))
    args = ["--resume", "r", "--out", str(ws), "--quiet", "--max-steps", "14"]
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert said in proc.stderr.strip().splitlines()[-1], proc.stderr
    status = json.loads(files.status.read_text())
    assert status["state"] == "crashed" and said in status["reason"]
    assert files.latest.read_bytes() == before  # the last checkpoint is untouched


def test_a_stop_request_cuts_a_long_evaluation_short(workspace, tmp_path):
    """langevin_steps at its bound makes the step-0 samples take hours: SIGTERM still ends the
    run within seconds, stopped, with a checkpoint and no half-written record."""
    extra = ("--out", str(tmp_path), "--run-id", "long-eval", "--set", "langevin_steps=100000")
    cmd, env = train_command(workspace, *extra)  # the later --out wins
    proc = subprocess.Popen(cmd, cwd=workspace, env=env, stderr=subprocess.PIPE, text=True)
    files = RunFiles.under(tmp_path, "long-eval")
    deadline = time.time() + 120
    while not any(r["type"] == "eval" for r in (records(tmp_path, "long-eval") if files.log.exists() else [])):
        assert time.time() < deadline and proc.poll() is None, "the step-0 evaluation never started sampling"
        time.sleep(0.2)
    time.sleep(1.0)  # inside the samples' Langevin chains now
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0 and time.time() - sent < 10, err[-2000:]
    assert load_checkpoint(files.latest)["step"] == 0
    assert records(tmp_path, "long-eval")[-1]["state"] == "stopped"
