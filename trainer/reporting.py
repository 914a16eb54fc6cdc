"""Copies of the run log for the tools users already have: `--report-to tensorboard` writes
TensorBoard event files beside the JSON log (logs/tensorboard/<run_id>), through
torch.utils.tensorboard. The JSON log stays the source of truth; a reporter only listens."""

from __future__ import annotations

import math
from pathlib import Path

SECTIONS = {"batch": "train", "eval": "valid", "epoch": "valid", "soc": "soc"}
SKIP = {"v", "t", "step", "epoch", "phase", "pid", "avalanche"}


class ReportError(RuntimeError):
    """A requested reporter cannot run here; the message says what to install."""


class TensorBoardReporter:
    def __init__(self, log_root: Path, run_id: str, resume_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ReportError("--report-to tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.folder = Path(log_root) / "tensorboard" / run_id
        # purge_step: TensorBoard drops what the stopped run wrote after the step it resumes from.
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=resume_step)

    def __call__(self, record: dict) -> None:
        kind, step = record["type"], record["step"]
        if kind in SECTIONS:
            for key, value in record.items():
                if key not in SKIP and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(f"{SECTIONS[kind]}/{key}", value, step)
        elif kind == "sample":
            self.writer.add_text("samples", f"{record['prompt']} → {record['text']}", step)
        elif kind == "status" and record.get("state") in ("finished", "stopped", "crashed"):
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def make_reporters(names: list[str], log_root: Path, run_id: str, resume_step: int | None) -> list:
    reporters = []
    for name in names:
        if name == "tensorboard":
            reporters.append(TensorBoardReporter(log_root, run_id, resume_step))
        else:
            raise ReportError(f"unknown --report-to {name!r}: use tensorboard")
    return reporters


def progress_bar(total: int, initial: int, quiet: bool):
    """The terminal's progress bar of a run (off when quiet or when stderr is not a terminal)."""
    import sys

    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=quiet or not sys.stderr.isatty())
