"""One row per run for the Runs page: state from status.json, progress and latest metrics from
the log, and the alerts still open (fired within the last `open_window` steps)."""

from __future__ import annotations

import math
import time

import pandas as pd

from trainer.runfiles import RunFiles
from trainer.status import effective_state, read_status

from .runlog import RunLog
from .settings import Folders


def _last(frame: pd.DataFrame, column: str):
    if frame.empty or column not in frame:
        return None
    values = frame[column].dropna()
    if values.empty:
        return None
    value = values.iloc[-1]
    return value.item() if hasattr(value, "item") else value


def open_alerts(log: RunLog, open_window: int = 500) -> pd.DataFrame:
    alerts = log.frame("alert")
    if alerts.empty:
        return alerts
    last_step = max(_last(log.frame("batch"), "step") or 0, int(alerts["step"].max()))
    recent = alerts[alerts["step"] >= last_step - open_window]
    return recent.drop_duplicates("rule", keep="last")


def run_summary(log: RunLog, folders: Folders, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    status = read_status(RunFiles(folders.logs, folders.checkpoints, log.run_id).status)
    batch, evals = log.frame("batch"), log.frames("eval", "epoch")
    phases = log.frame("phase")
    heartbeat = status.get("heartbeat") if status else None
    step = _last(batch, "step") or 0
    total = status.get("total_steps") if status else None
    alerts = open_alerts(log)
    return {
        "run": log.run_id,
        "state": effective_state(status, now=now) if status else "no status.json",
        "heartbeat_age_s": (now - float(heartbeat)) if heartbeat else None,
        "phase": _last(phases, "name"),
        "step": step,
        "progress": (step / total) if total else None,
        "epoch": _last(batch, "epoch"),
        "tokens_per_s": _last(batch, "tokens_per_s"),
        "loss": _last(batch, "loss"),
        "nll": _last(batch, "nll"),
        "ppl_energy": _last(evals, "ppl_energy"),
        "ppl_decoder": _last(evals, "ppl_decoder"),
        "n_splats": _last(batch, "n_splats"),
        "open_alerts": ", ".join(alerts["rule"]) if not alerts.empty else "",
        "corrupt_lines": log.corrupt_lines,
    }


def format_age(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
