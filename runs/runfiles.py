"""The files of a run: the contract between the trainer that writes them and the dashboard and
tools that read them (docs/design.md, "Run files"). Standard library only: the dashboard's
light pages import this module without torch.

    <logs>/ebm/<run_id>.jsonl                    append-only JSON lines, first record `meta`
    <checkpoints>/<run_id>/latest.pt             what --resume reads
    <checkpoints>/<run_id>/ebm_epoch_N.pt        epoch snapshots (retention: keep_every, keep_last)
    <checkpoints>/<run_id>/status.json           pid, state, heartbeat
    <checkpoints>/<run_id>/tokenizer.json        so a checkpoint decodes text by itself
    <checkpoints>/<run_id>/train.out             console of a detached run
    <checkpoints>/<run_id>/run.lock              the pid of the one process writing the run
    <checkpoints>/<run_id>/notes.json            the run's name and notes, as edited in the dashboard
    <checkpoints>/<run_id>/export/               ebm-export: model.safetensors, config.json, tokenizer.json
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

# One version for the whole contract: log records carry it as "v", checkpoints as
# "schema_version". Bump it when a reader of the old files would misread the new ones.
SCHEMA_VERSION = 1

COMMON_FIELDS = ("v", "type", "t", "step", "epoch")
BATCH_FIELDS = (
    "loss",
    "nll",
    "ppl",
    "dsm",
    "dec",
    "balance",
    "energy",
    "energy_splat",
    "energy_geo",
    "energy_comp",
    "beta",
    "grad_norm",
    "lr",
    "train_seconds",
    "tokens_per_s",
    "n_splats",
    "phase",
    "cpu_cores",
    "rss_mb",
)
EVAL_FIELDS = ("ppl_energy", "ppl_decoder", "nll_energy", "nll_decoder", "coverage", "tokens", "n_splats", "phase", "split")
# The fields each kind of record always has, beyond COMMON_FIELDS; writers may add more.
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "meta": ("run_id", "config", "tokenizer", "data", "device", "pid", "n_params"),
    "batch": BATCH_FIELDS,
    "eval": EVAL_FIELDS,
    "epoch": EVAL_FIELDS,
    "soc": ("activity", "avalanche", "n_splats", "size", "merged", "pruned", "spawned", "soc_rate"),
    "phase": ("phase", "name", "capacity", "tau", "spawned", "n_splats"),
    "alert": ("rule", "severity", "message", "advice"),
    "checkpoint": ("path", "latest"),
    "sample": ("prompt", "text", "mean_energy", "mean_cosine"),
    "status": ("state",),
    "resume": ("from_checkpoint",),  # records logged after `step` by the run that stopped are void
}
RECORD_KINDS = tuple(RECORD_FIELDS)
EPOCH_FILE = re.compile(r"ebm_epoch_(\d+)\.pt$")
EXPORT_WEIGHTS = "model.safetensors"  # an ebm-export folder holds this, config.json and tokenizer.json


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message is one line that says why."""


def run_id_problem(run_id: str) -> str | None:
    """Why a run id cannot name a run folder, or None. One path component of letters, digits,
    '.', '_' and '-', so that no id reaches outside the checkpoints and logs folders."""
    if RUN_ID.fullmatch(run_id) and ".." not in run_id:
        return None
    return (
        f"run id {run_id!r} is not a plain name: use up to 128 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit (no '/', no '..')"
    )


def new_run_id() -> str:
    """A fresh run id: the local date and time, and a random suffix for runs started in the same second."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def run_exists(files: RunFiles) -> bool:
    """Whether a run has written anything of its own yet: a log, a checkpoint or a status."""
    return files.log.exists() or files.status.exists() or any(files.run_dir.glob("*.pt"))


def missing_fields(record: dict) -> list[str]:
    """Required fields that a record lacks (all of COMMON_FIELDS if its kind is unknown)."""
    kind = record.get("type")
    if kind not in RECORD_FIELDS:
        return ["type"]
    return [f for f in (*COMMON_FIELDS, *RECORD_FIELDS[kind]) if f not in record]


@dataclass(frozen=True)
class RunFiles:
    """Every path of one run, from the two roots."""

    logs: Path  # the logs root; the run's log is logs/ebm/<run_id>.jsonl
    checkpoints: Path  # the checkpoints root
    run_id: str

    @classmethod
    def under(cls, out: str | Path, run_id: str) -> RunFiles:
        """The layout the trainer writes below --out: out/logs and out/checkpoints."""
        return cls(Path(out) / "logs", Path(out) / "checkpoints", run_id)

    @property
    def log(self) -> Path:
        return log_path(self.logs, self.run_id)

    @property
    def run_dir(self) -> Path:
        return self.checkpoints / self.run_id

    @property
    def status(self) -> Path:
        return self.run_dir / "status.json"

    @property
    def latest(self) -> Path:
        return self.run_dir / "latest.pt"

    @property
    def tokenizer(self) -> Path:
        return self.run_dir / "tokenizer.json"

    @property
    def console(self) -> Path:
        return self.run_dir / "train.out"

    @property
    def notes(self) -> Path:
        return self.run_dir / "notes.json"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.run_dir / f"ebm_epoch_{epoch}.pt"


def log_path(log_dir: str | Path, run_id: str) -> Path:
    return Path(log_dir) / "ebm" / f"{run_id}.jsonl"


def list_runs(log_dir: str | Path) -> list[str]:
    """Run ids with a log, newest first."""
    folder = Path(log_dir) / "ebm"
    if not folder.is_dir():
        return []
    runs = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.stem for p in runs]


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(epoch, path) of the epoch snapshots of a run, oldest first."""
    found = []
    for p in Path(run_dir).glob("ebm_epoch_*.pt"):
        m = EPOCH_FILE.search(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def checkpoints_of(run_dir: str | Path) -> list[Path]:
    """latest.pt (if any), the epoch snapshots newest first, then export folders: the order a picker shows."""
    run_dir = Path(run_dir)
    latest = run_dir / "latest.pt"
    exports = sorted(p.parent for p in run_dir.glob(f"*/{EXPORT_WEIGHTS}") if not p.parent.name.startswith("."))
    return ([latest] if latest.exists() else []) + [p for _, p in reversed(list_checkpoints(run_dir))] + exports


def runs_with_checkpoints(checkpoint_root: str | Path) -> list[str]:
    """Run ids with at least one checkpoint, most recently changed first."""
    root = Path(checkpoint_root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and checkpoints_of(p)]
    return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]


def newest_resumable(checkpoint_root: str | Path) -> str | None:
    """The run whose latest.pt was written last, or None."""
    runs = [p.parent for p in Path(checkpoint_root).glob("*/latest.pt")]
    return max(runs, key=lambda p: (p / "latest.pt").stat().st_mtime).name if runs else None
