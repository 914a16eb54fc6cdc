"""One row per run for the Runs page: state from status.json, progress and latest metrics from
the log, and the alerts still open (fired within the last `open_window` steps)."""

from __future__ import annotations

import json
import math
import time

import pandas as pd

from runs.files import atomic_write_json
from runs.runfiles import RunFiles, list_runs
from runs.status import effective_state, read_status

from .runlog import RunLog
from .settings import Folders

# The Runs table's columns in their order, each with its meaning and unit (shown as the column
# header's help): what a user scans first (state, progress, time left, perplexity) on the left.
COLUMN_HELP = {
    "name": "ebm-train --name, or the name saved under 'Name and notes' (the run id if neither)",
    "run": "the run id: the log's name under logs/ebm and the run's folder under checkpoints",
    "state": "from status.json; 'not responding' when the heartbeat is over 2 min old or the pid is gone",
    "progress": "share of the budget done: steps of planned steps, or minutes of --max-minutes, whichever is further",
    "elapsed": "wall time since the run started (to its last record once it has stopped)",
    "ETA": "wall time left at the pace so far, evaluations included",
    "step": "optimiser steps taken",
    "epoch": "passes over the training split completed",
    "phase": "curriculum phase: init, then growth of the splat store, then refinement",
    "ppl_energy": "latest validation perplexity of p_E, per token of the run's tokenizer (exact softmax)",
    "eval_step": "the step of the latest validation perplexity (every eval_interval steps, and once more at a stop)",
    "best_ppl_energy": "lowest validation ppl_energy so far",
    "ppl_decoder": "latest validation perplexity of the decoder head, per token",
    "tokens_per_s": "training targets per second, median of the last 20 batch records",
    "loss": "total training loss of the last batch, nats (nll + weighted dsm, dec and balance terms)",
    "nll": "nats per target of p_E on the last training batch",
    "n_splats": "vMF splats in the store at the last batch",
    "open_alerts": "alert rules fired within the last 500 steps (details below the table)",
    "heartbeat": "time since the trainer last wrote status.json (every 5 s while it runs)",
    "started": "wall-clock start of the run (local time)",
    "stop_reason": "why a stopped or crashed run ended",
    "tags": "tags given under 'Name and notes'; the Curves page filters runs by them",
    "preset": "the preset the run started from (ebm-train --preset) and why it was chosen; --set changes come on top",
}


# The columns a 1,600-pixel window shows without scrolling; the rest behind "All columns".
MAIN_COLUMNS = (
    *("name", "run", "state", "progress", "ETA", "step"),
    *("ppl_energy", "eval_step", "tokens_per_s", "open_alerts", "stop_reason", "tags"),
)


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


def progress(log: RunLog, status: dict | None) -> float | None:
    """Share of the run's budget done: steps against planned steps, or training time against
    --max-minutes, whichever is further; a finished run is done."""
    if status and status.get("state") == "finished":
        return 1.0
    batch = log.frame("batch")
    budget = (log.meta or {}).get("budget") or {}
    total = budget.get("planned_steps") or (status or {}).get("total_steps")
    shares = [(_last(batch, "step") or 0) / total] if total else []
    if budget.get("max_minutes"):
        shares.append((_last(batch, "train_seconds") or 0.0) / (60 * budget["max_minutes"]))
    return min(1.0, max(shares)) if shares else None


def eta_seconds(log: RunLog, done: float | None, now: float) -> float | None:
    """Wall time left at the pace so far (evaluations included), or None before there is a pace."""
    start = (log.meta or {}).get("t")
    if not done or done >= 1.0 or start is None:
        return None
    return (now - float(start)) * (1.0 - done) / done


def smoothed_tokens_per_s(batch: pd.DataFrame, last: int = 20) -> float | None:
    """Median over the last batches: one batch's rate jumps with every evaluation and SOC check."""
    if batch.empty or "tokens_per_s" not in batch:
        return None
    values = batch["tokens_per_s"].dropna().tail(last)
    return float(values.median()) if not values.empty else None


def read_notes(folders: Folders, run_id: str) -> dict:
    """The name and notes a user gave the run in the dashboard ({} when none)."""
    try:
        data = json.loads(RunFiles(folders.logs, folders.checkpoints, run_id).notes.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_notes(folders: Folders, run_id: str, name: str, notes: str, tags: list[str] | None = None) -> None:
    record: dict = {"name": name, "notes": notes}
    kept = sorted({t.strip() for t in tags or [] if t.strip()})
    if kept:
        record["tags"] = kept
    atomic_write_json(RunFiles(folders.logs, folders.checkpoints, run_id).notes, record)


def run_tags(notes: dict) -> list[str]:
    tags = notes.get("tags", [])
    return [str(t) for t in tags] if isinstance(tags, list) else []


def run_matches(query: str, run_id: str, name: str, tags: list[str], config: dict) -> bool:
    """Does a run pass a filter? Every word of the query must match: KEY=VALUE a config field's
    value, anything else a part of the run id, name or a tag (case-insensitive)."""
    text = " ".join([run_id, name, *tags]).lower()
    for word in query.split():
        key, eq, value = word.partition("=")
        if eq and str(config.get(key, "")).lower() != value.lower():
            return False
        if not eq and word.lower() not in text:
            return False
    return True


def best(frame: pd.DataFrame, column: str) -> float | None:
    if frame.empty or column not in frame:
        return None
    values = frame[column].dropna()
    return float(values.min()) if not values.empty else None


def _preset(meta: dict) -> str:
    name = meta.get("preset")
    return f"{name} ({meta['preset_reason']})" if name and meta.get("preset_reason") else (name or "-")


def run_summary(log: RunLog, folders: Folders, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    status = read_status(RunFiles(folders.logs, folders.checkpoints, log.run_id).status)
    batch, evals = log.frame("batch"), log.frames("eval", "epoch")
    state = effective_state(status, now=now) if status else "no status.json"
    heartbeat = status.get("heartbeat") if status and state in ("running", "starting", "not responding") else None
    done = progress(log, status)
    start = (log.meta or {}).get("t")
    end = now if state in ("running", "starting") else _last(batch, "t") or now
    alerts = open_alerts(log)
    meta, notes = log.meta or {}, read_notes(folders, log.run_id)
    return {
        "name": notes.get("name") or meta.get("name") or log.run_id,
        "tags": ", ".join(run_tags(notes)),
        "run": log.run_id,
        "state": state,
        "stop_reason": (status or {}).get("reason", "") if state in ("crashed", "stopped") else "",
        "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(float(start))) if start else None,
        "preset": _preset(meta),
        "heartbeat_age_s": (now - float(heartbeat)) if heartbeat else None,
        "phase": _last(log.frame("phase"), "name"),
        "step": _last(batch, "step") or 0,
        "progress": done,
        "elapsed_s": (end - float(start)) if start else None,
        "eta_s": eta_seconds(log, done, now) if state == "running" else None,
        "epoch": _last(batch, "epoch"),
        "tokens_per_s": smoothed_tokens_per_s(batch),
        "loss": _last(batch, "loss"),
        "nll": _last(batch, "nll"),
        "ppl_energy": _last(evals, "ppl_energy"),
        "eval_step": _last(evals, "step"),
        "ppl_decoder": _last(evals, "ppl_decoder"),
        "best_ppl_energy": best(evals, "ppl_energy"),
        "n_splats": _last(batch, "n_splats"),
        "open_alerts": ", ".join(alerts["rule"]) if not alerts.empty else "",
        "corrupt_lines": log.corrupt_lines,
    }


def table_view(rows: pd.DataFrame) -> pd.DataFrame:
    """run_summary rows as the Runs table shows them: ages as text, the columns of COLUMN_HELP."""
    ages = {"heartbeat_age_s": "heartbeat", "elapsed_s": "elapsed", "eta_s": "ETA"}
    shown = rows.assign(**{name: rows[key].map(format_age) for key, name in ages.items()})
    shown["name"] = [("" if name == run else name) for name, run in zip(shown["name"], shown["run"])]  # no echo of the id
    return shown[[column for column in COLUMN_HELP if column in shown]]


def format_age(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def next_checkpoints(folders: Folders, now: float | None = None) -> list[tuple[str, float]]:
    """(run, seconds until its next clock checkpoint) for each running run that has announced one."""
    now = time.time() if now is None else now
    due = []
    for run_id in list_runs(folders.logs):
        status = read_status(RunFiles(folders.logs, folders.checkpoints, run_id).status)
        when = (status or {}).get("next_checkpoint_t")
        if isinstance(when, (int, float)) and effective_state(status, now=now) == "running":
            due.append((run_id, max(0.0, float(when) - now)))
    return due
