"""The `meta` record that opens a run's log: what the run is, on what, from where, and its budget."""

from __future__ import annotations

import os

from ebm import EBMModel
from ebm.ops import head_dtype

from .data import BUILTIN_LICENSE
from .options import RunOptions


def meta_record(opts: RunOptions, model: EBMModel, tokenizer, sizes: dict, device, context: dict) -> dict:
    """`sizes`: train_tokens, valid_tokens, planned_steps; `context`: embedding_source,
    device (its name), replicas."""
    cfg = model.cfg
    return {
        "run_id": opts.run_id,
        "name": opts.name or opts.run_id,
        "config": cfg.to_dict(),
        "tokenizer": tokenizer.name,
        "data": opts.data,
        "data_note": BUILTIN_LICENSE if opts.data == "builtin" else opts.data,
        "train_tokens": sizes["train_tokens"],
        "valid_tokens": sizes["valid_tokens"],
        **context,
        "grad_accum": opts.grad_accum,
        "precision": opts.precision,
        "compiled": opts.compile,
        "head_dtype": str(head_dtype(cfg.head_dtype, device)).removeprefix("torch."),
        "pid": os.getpid(),
        "n_params": sum(p.numel() for p in model.parameters()),
        "budget": {"planned_steps": sizes["planned_steps"], "max_steps": opts.max_steps, "max_minutes": opts.max_minutes},
        "preset": opts.preset[0].name if opts.preset else None,
        "preset_reason": opts.preset[1] if opts.preset else None,
    }
