"""Copies of the run log for the tools users already have, beside the JSON log under logs/:

  --report-to tensorboard  event files in logs/tensorboard/<run_id> (torch.utils.tensorboard)
  --report-to wandb        an offline Weights & Biases run in logs/wandb (no account; `wandb sync` later)
  --report-to mlflow       an MLflow run in the local database logs/mlflow.db (`mlflow ui --backend-store-uri
                           sqlite:///logs/mlflow.db`; MLflow 3 keeps its plain-file store for old data only)

The JSON log stays the source of truth; a reporter only listens. Each gets the same scalars:
"<section>/<field>" of the batch (train), eval and epoch (valid) and SOC records."""

from __future__ import annotations

import math
from pathlib import Path

SECTIONS = {"batch": "train", "eval": "valid", "epoch": "valid", "soc": "soc"}
SKIP = {"v", "t", "step", "epoch", "phase", "pid", "avalanche"}


class ReportError(RuntimeError):
    """A requested reporter cannot run here; the message says what to install."""


def scalars(record: dict) -> dict[str, float]:
    """The record's finite numbers as "<section>/<field>"; empty for records that are not curves."""
    section = SECTIONS.get(record["type"])
    if section is None:
        return {}
    return {
        f"{section}/{key}": float(value)
        for key, value in record.items()
        if key not in SKIP and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def _finished(record: dict) -> bool:
    return record["type"] == "status" and record.get("state") in ("finished", "stopped", "crashed")


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
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"])
        if record["type"] == "sample":
            self.writer.add_text("samples", f"{record['prompt']} → {record['text']}", record["step"])
        elif _finished(record):
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbReporter:
    """An offline wandb run with the run's id, so a resumed run continues it."""

    def __init__(self, log_root: Path, run_id: str, resume_step: int | None = None):
        try:
            import wandb
        except ImportError:
            raise ReportError("--report-to wandb needs the wandb package: pip install 'ebm-lab[wandb]'") from None
        self.folder = Path(log_root) / "wandb"
        self.folder.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True)
        self.run = wandb.init(
            project="ebm-lab", id=run_id, name=run_id, dir=str(self.folder), mode="offline", resume="allow", settings=settings
        )

    def __call__(self, record: dict) -> None:
        values = scalars(record)
        if values:
            self.run.log(values, step=record["step"])

    def close(self) -> None:
        self.run.finish()


class MLflowReporter:
    """An MLflow run in the local database logs/mlflow.db, found again by its run id on a resume."""

    def __init__(self, log_root: Path, run_id: str, resume_step: int | None = None):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ReportError("--report-to mlflow needs the mlflow package: pip install 'ebm-lab[mlflow]'") from None
        self.database = Path(log_root).resolve() / "mlflow.db"
        try:
            self.client = MlflowClient(tracking_uri=f"sqlite:///{self.database}")
            experiment = self.client.get_experiment_by_name("ebm-lab")
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment("ebm-lab")
            found = self.client.search_runs([experiment_id], f"tags.ebm_run_id = '{run_id}'")
            self.mlflow_run = (
                found[0].info.run_id
                if found
                else self.client.create_run(experiment_id, run_name=run_id, tags={"ebm_run_id": run_id}).info.run_id
            )
        except Exception as err:  # a store MLflow cannot open: one line, not its traceback
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ReportError(f"--report-to mlflow: {self.database}: {first}") from None

    def __call__(self, record: dict) -> None:
        from mlflow.entities import Metric

        values = scalars(record)
        if values:
            stamp = int(record.get("t", 0) * 1000)
            metrics = [Metric(tag, value, stamp, record["step"]) for tag, value in values.items()]
            self.client.log_batch(self.mlflow_run, metrics=metrics)
        elif _finished(record):
            status = {"finished": "FINISHED", "stopped": "KILLED", "crashed": "FAILED"}[record["state"]]
            self.client.set_terminated(self.mlflow_run, status)

    def close(self) -> None:
        pass


REPORTERS = {"tensorboard": TensorBoardReporter, "wandb": WandbReporter, "mlflow": MLflowReporter}


def make_reporters(names: list[str], log_root: Path, run_id: str, resume_step: int | None) -> list:
    unknown = [name for name in names if name not in REPORTERS]
    if unknown:
        raise ReportError(f"unknown --report-to {unknown[0]!r}: use {', '.join(REPORTERS)}")
    return [REPORTERS[name](log_root, run_id, resume_step) for name in names]


def progress_bar(total: int, initial: int, quiet: bool):
    """The terminal's progress bar of a run (off when quiet or when stderr is not a terminal)."""
    import sys

    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=quiet or not sys.stderr.isatty())
