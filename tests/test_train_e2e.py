"""End to end: the real ebm-train CLI on a small slice of WikiText-2 with a tiny config."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import child_env, records, train

from runs.checkpoint import load_checkpoint, model_from_checkpoint
from runs.runfiles import RECORD_KINDS, SCHEMA_VERSION, missing_fields
from trainer.schedule import is_eval_step


def test_log_schema_every_event_type(full_run):
    _, recs = full_run
    assert recs[0]["type"] == "meta"
    for r in recs:  # the contract of runs.runfiles, which the dashboard reads
        assert not missing_fields(r) and r["v"] == SCHEMA_VERSION, (r["type"], missing_fields(r))
    seen = {r["type"] for r in recs}
    # a run that never stopped has no resume, and a healthy one no alert (test_faults checks those records)
    assert seen == set(RECORD_KINDS) - {"resume", "alert"}, set(RECORD_KINDS) - seen
    assert {"kappa_mean", "alpha_p50", "soc_rate"} <= set(next(r for r in recs if r["type"] == "eval"))
    assert {"distinct_1", "embedding_source"} <= set(next(r for r in recs if r["type"] == "sample")) | set(recs[0])
    assert recs[-1] == {**recs[-1], "type": "status", "state": "finished"}
    assert {r["name"] for r in recs if r["type"] == "phase"} == {"init", "mid"}
    assert any(r["avalanche"] and r["spawned"] > 0 for r in recs if r["type"] == "soc")


def test_validation_perplexity_falls_and_checkpoints_load(full_run):
    ws, recs = full_run
    evals = [r for r in recs if r["type"] in ("eval", "epoch")]
    assert evals[-1]["ppl_energy"] < 0.8 * evals[0]["ppl_energy"], [e["ppl_energy"] for e in evals]
    assert evals[-1]["ppl_decoder"] < evals[0]["ppl_decoder"]
    run = ws / "checkpoints" / "full"
    assert {p.name for p in run.glob("*.pt")} == {"ebm_epoch_1.pt", "ebm_epoch_2.pt", "latest.pt"}
    state = load_checkpoint(run / "ebm_epoch_2.pt")
    model = model_from_checkpoint(state)
    assert model.splats.n == state["model"]["splats.mu_raw"].shape[0] and state["epoch"] == 2
    assert (run / "tokenizer.json").exists()
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


def test_resume_continues_exactly(workspace):
    fixed = ("--set", "schedule_steps=50")  # the resumed leg has a longer budget; keep one schedule for both runs
    assert train(workspace, "--run-id", "straight", "--max-steps", "50", *fixed).returncode == 0
    assert train(workspace, "--run-id", "split", "--max-steps", "25", *fixed).returncode == 0
    proc = train(workspace, "--resume", "split", "--max-steps", "50")
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = {r["step"]: r["loss"] for r in records(workspace, "straight") if r["type"] == "batch"}
    b = {r["step"]: r["loss"] for r in records(workspace, "split") if r["type"] == "batch"}
    assert sorted(b) == list(range(1, 51))  # no step twice, none missing
    for step in range(26, 51):
        assert abs(a[step] - b[step]) <= 1e-6 * max(1.0, abs(a[step])), (step, a[step], b[step])  # bitwise in practice


def test_time_budget_stops_with_evaluation_and_checkpoint(workspace):
    proc = train(workspace, "--run-id", "budget", "--max-minutes", "0.02")  # 1.2 s of optimiser steps
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = records(workspace, "budget")
    batches = [r for r in recs if r["type"] == "batch"]
    assert 1.2 <= batches[-1]["train_seconds"] < 1.2 + 5 and batches[-2]["train_seconds"] < 1.2
    assert recs[-1]["state"] == "finished" and any(
        r["type"] in ("eval", "epoch") and r["step"] == batches[-1]["step"] for r in recs
    )
    assert load_checkpoint(workspace / "checkpoints" / "budget" / "latest.pt")["step"] == batches[-1]["step"]


def test_evaluate_and_diagnose_on_checkpoint(full_run):
    ws, _ = full_run
    env = child_env(EBM_CACHE=str(ws / "cache"))
    ev = subprocess.run(
        [
            sys.executable,
            "-m",
            "commands",
            "evaluate",
            "--checkpoint",
            str(ws / "checkpoints" / "full"),
            "--data",
            str(ws / "corpus.txt"),
            "--max-tokens",
            "512",
            "--samples",
            "2",
            "--json",
        ],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads(ev.stdout)
    assert result["tokens"] == 512 and 1 < result["ppl_energy"] < 300 and len(result["samples"]) == 2
    assert 0 <= result["generation"]["distinct_1"] <= 1
    dg = subprocess.run(
        [
            sys.executable,
            "-m",
            "commands",
            "diagnose",
            "--checkpoint",
            str(ws / "checkpoints/full/latest.pt"),
            "--report",
            str(ws / "report"),
            "--out",
            str(ws),
        ],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
    )
    assert dg.returncode == 0, dg.stderr[-2000:]
    report = (ws / "report" / "report.md").read_text()
    assert "## Recommendations" in report and "kappa" in report and (ws / "report" / "hist_kappa.html").exists()
    if shutil.which("chromium"):  # kaleido draws the PNGs with the system Chromium
        assert (ws / "report" / "hist_kappa.png").stat().st_size > 5000 and "hist_kappa.png" in report
    bad = subprocess.run(
        [sys.executable, "-m", "commands", "evaluate", "--checkpoint", str(ws / "nope.pt")],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no checkpoint" in bad.stderr


def test_detach_returns_at_once_and_sigterm_stops_cleanly(workspace):
    t0 = time.time()
    proc = train(workspace, "--run-id", "bg", "--detach")
    assert proc.returncode == 0 and time.time() - t0 < 15
    pid = int(next(line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("pid:")))
    log = workspace / "logs" / "ebm" / "bg.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and sum(1 for r in records(workspace, "bg") if r["type"] == "batch") >= 5):
        time.sleep(0.5)
    assert sum(1 for r in records(workspace, "bg") if r["type"] == "batch") >= 5, "background run made no progress"
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 60
    status = workspace / "checkpoints" / "bg" / "status.json"
    while time.time() < deadline and json.loads(status.read_text())["state"] == "running":
        time.sleep(0.3)
    final = json.loads(status.read_text())
    assert final["state"] == "stopped" and final["reason"].startswith("SIGTERM received at step")
    stopped_at = load_checkpoint(workspace / "checkpoints" / "bg")["step"]
    assert stopped_at >= 5
    # the curve ends where the run ended: a last (final) evaluation at the stop step, unless one was just due
    last_eval = [r for r in records(workspace, "bg") if r["type"] == "eval"][-1]
    assert last_eval["step"] == stopped_at and last_eval["ppl_energy"] > 1
    cfg = next(r for r in records(workspace, "bg") if r["type"] == "meta")["config"]
    assert last_eval.get("final") is True or is_eval_step(stopped_at, cfg["eval_interval"], cfg["eval_first_interval"])


def test_bad_input_gives_one_line_errors(workspace):
    for extra, fragment in (
        (["--set", "knn_k=0"], "knn_k"),
        (["--data", "/no/such/file"], "no such file"),
        (["--device", "tpu"], "unknown --device"),
        (["--resume", "ghost"], "no run"),
    ):
        proc = train(workspace, *extra)
        assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_checkpoints_come_on_a_clock_within_an_epoch(workspace):
    proc = train(workspace, "--run-id", "clock", "--max-steps", "60", "--set", "checkpoint_minutes=0.005")
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = records(workspace, "clock")
    saved = [r["step"] for r in recs if r["type"] == "checkpoint"]
    assert len(saved) >= 3 and saved[0] < 60  # the first after a fifth of the interval, then every 0.3 s
    evals = [r["step"] for r in recs if r["type"] == "eval"]
    assert evals[:3] == [0, 10, 30]  # learning shows from the start
    assert load_checkpoint(workspace / "checkpoints" / "clock" / "latest.pt")["step"] == 60


def test_report_to_tensorboard_writes_event_files(workspace):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    proc = train(workspace, "--run-id", "tb", "--max-steps", "12", "--report-to", "tensorboard")
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = EventAccumulator(str(workspace / "logs" / "tensorboard" / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/nll", "valid/ppl_energy"} <= set(tags)
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 13))


def _wandb_records(path) -> list[bytes]:
    """The protobuf records of a .wandb file: a 7-byte header (":W&B", magic, version), then
    LevelDB's log format, 32 KiB blocks of chunks (crc32 4, length 2, type 1: full, first, middle,
    last). wandb's own reader moved into its Go core, so the test reads the format itself."""
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, chunk, records = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(chunk)
            chunk = b""
    return records


def _wandb_history(run_folder) -> dict[int, dict]:
    """step -> logged values, read from an offline wandb run's .wandb file."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_folder.glob("offline-run-*/run-*.wandb")
    history = {}
    for data in _wandb_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history[items["_step"]] = items
    return history


def test_report_to_wandb_and_mlflow_write_what_the_json_log_holds(workspace):
    from mlflow.tracking import MlflowClient

    proc = train(workspace, "--run-id", "both", "--max-steps", "12", "--report-to", "wandb", "--report-to", "mlflow")
    assert proc.returncode == 0, proc.stderr[-2000:]
    logged = {r["step"]: r["loss"] for r in records(workspace, "both") if r["type"] == "batch"}
    assert sorted(logged) == list(range(1, 13))

    history = _wandb_history(workspace / "logs" / "wandb" / "wandb")
    assert {step: history[step]["train/loss"] for step in logged} == pytest.approx(logged, rel=1e-6)
    assert "valid/ppl_energy" in history[0]

    client = MlflowClient(tracking_uri=f"sqlite:///{(workspace / 'logs' / 'mlflow.db').resolve()}")
    (run,) = client.search_runs([client.get_experiment_by_name("ebm-lab").experiment_id], "tags.ebm_run_id = 'both'")
    assert run.info.status == "FINISHED"
    losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/loss")}
    assert losses == pytest.approx(logged, rel=1e-6)
