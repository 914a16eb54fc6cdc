"""The options of one training run that are not model config: where, how long, on what."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ebm.presets import Preset
from runs.runfiles import RunFiles


@dataclass(frozen=True)
class RunOptions:
    run_id: str
    out: Path  # holds logs/ and checkpoints/
    data: str = "builtin"  # a corpus name, or a path made absolute when the run starts
    data_fingerprint: str = ""  # the corpus's fingerprint: --resume refuses another text under the same path
    device: str = "cpu"
    embeddings: str = "auto"  # pretrained source of token embeddings: auto, gpt2, minilm, own
    max_steps: int | None = None
    max_minutes: float | None = None  # optimiser-step time, evaluation not counted
    grad_accum: int = 1  # micro-batches per optimiser step and process
    precision: str = "auto"  # auto (the config's head_dtype), bf16, tf32 or fp32
    compile: bool = False  # the context encoder through torch.compile (trainer.compiled)
    log_every: int = 1  # a batch record every N steps
    quiet: bool = False  # no progress bar
    name: str | None = None  # a human name for the run, shown by the dashboard
    report_to: tuple[str, ...] = ()  # other tools that get a copy of the log: "tensorboard"
    preset: tuple[Preset, str] | None = None  # the preset a new run started from, and why

    @property
    def files(self) -> RunFiles:
        return RunFiles.under(self.out, self.run_id)
