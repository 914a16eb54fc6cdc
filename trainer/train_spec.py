"""What ebm-train was asked to do, as one frozen record: built once from the command line (or by
a program), validated once, then read by trainer.startup and never changed."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from runs.runfiles import RunFiles, run_exists, run_id_problem

from .compiled import compile_problem


@dataclass(frozen=True)
class TrainSpec:
    data: str | None
    tokenizer: str | None
    device: str
    epochs: int | None
    batch_size: int | None
    max_steps: int | None
    grad_accum: int
    precision: str
    compile: bool
    max_minutes: float | None
    resume: str | None  # a run id, "latest", or None for a new run
    accept_changed_data: bool
    run_id: str | None
    name: str | None
    out: Path
    preset: str | None
    config: str | None
    set: tuple[str, ...]
    embeddings: str
    no_curriculum: bool
    detach: bool
    seed: int | None
    quiet: bool
    log_every: int
    report_to: tuple[str, ...]
    list_config: bool
    argv: tuple[str, ...]  # as typed: --detach starts the same command in the background

    def problem(self) -> str | None:
        """What is wrong with the run's identity and budget flags, before any file is created."""
        for flag, run_id in (("--run-id", self.run_id), ("--resume", self.resume if self.resume != "latest" else None)):
            if run_id is not None and (problem := run_id_problem(run_id)):
                return f"{flag}: {problem}"
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            return f"--max-minutes {self.max_minutes}: give a number of minutes above 0 (leave it out for no time limit)"
        counts: tuple[tuple[str, int | None], ...] = (
            ("--max-steps", self.max_steps),
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--log-every", self.log_every),
            ("--grad-accum", self.grad_accum),
        )
        for flag, value in counts:
            if value is not None and value < 1:
                return f"{flag} {value}: give 1 or more (leave it out for the default)"
        if self.compile and (problem := compile_problem(self.device)):
            return problem
        main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun rank 0 may have started the run already
        if main_rank and not self.resume and self.run_id and run_exists(RunFiles.under(self.out, self.run_id)):
            return (
                f"run {self.run_id!r} already exists under {self.out}: continue it with --resume "
                f"{self.run_id}, or give a new --run-id"
            )
        return None
