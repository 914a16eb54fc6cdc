"""What each command was asked to do: a frozen, typed record built once from its parsed command
line, validated once, and then only read. Torch-free, so building one costs nothing."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from trainer.train_spec import TrainSpec

__all__ = ["DiagnoseSpec", "EvaluateSpec", "ExportSpec", "GenerateSpec", "TrainSpec", "spec_from"]

Spec = TypeVar("Spec")


def spec_from(cls: type[Spec], args: argparse.Namespace, **computed: Any) -> Spec:
    """The spec of a parsed command line: each field from the option of its name (repeatable
    options as tuples), unless given in `computed`."""
    values = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = computed[field.name] if field.name in computed else getattr(args, field.name)
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


@dataclass(frozen=True)
class EvaluateSpec:
    checkpoint: Path
    data: str
    split: str
    detokenize: bool
    max_tokens: int
    stride: int
    samples: int
    sample_tokens: int
    device: str
    seed: int
    memory: str | None
    memory_tokens: int
    json: bool


@dataclass(frozen=True)
class GenerateSpec:
    checkpoint: Path
    prompt: str
    tokens: int
    samples: int
    seed: int
    sampler: str
    keywords: str
    avoid: str
    right_context: str
    topic: str
    weight: tuple[str, ...]
    temperature: float
    top_k: int
    budget_seconds: float | None
    budget_drafts: int
    chains: int
    steps: int
    move_share: float
    device: str
    json: bool


@dataclass(frozen=True)
class DiagnoseSpec:
    checkpoint: Path | None
    report: str | None  # "" for the default folder beside the checkpoint
    batch: bool
    run_id: str | None
    out: Path


@dataclass(frozen=True)
class ExportSpec:
    checkpoint: Path
    out: Path  # default: export/ beside the checkpoint
