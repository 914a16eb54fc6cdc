"""ebm-export: write a checkpoint's export folder (runs.export_format)."""

from __future__ import annotations

import sys
from pathlib import Path

from runs.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from runs.export_format import export_contents, write_export

from .specs import ExportSpec


def export_checkpoint(checkpoint: Path, out: Path) -> Path:
    """Write the export folder of a checkpoint; returns the folder."""
    state = load_checkpoint(checkpoint)
    model_state = model_from_checkpoint(state).state_dict()  # the current layout, whatever the file's
    tensors, meta = export_contents(state, model_state)
    tokenizer = (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "tokenizer.json"
    return write_export(out, tensors, meta, tokenizer)


def run(spec: ExportSpec) -> int:
    try:
        folder = export_checkpoint(spec.checkpoint, spec.out)
    except (CheckpointError, OSError) as err:
        print(f"ebm-export: error: {err}", file=sys.stderr)
        return 2
    print(f"exported {spec.checkpoint} to {folder}")
    return 0
