"""ebm-generate: text from a checkpoint under constraints added at generation time
(ebm.composition). Bad input gets one line on stderr and exit status 2."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

from ebm.composition import COMPOSERS, Budget, ChainSettings, ComposedSample, compose
from ebm.constraints import from_text, right_context_of
from runs.runfiles import CheckpointError
from trainer.device_spec import DeviceError, resolve_device
from trainer.loading import load_run
from trainer.tokenizer import TokenizerError

from .specs import GenerateSpec


class GenerateError(ValueError):
    pass


def parse_weights(items: Iterable[str]) -> dict[str, float]:
    """["keyword=3", ...] -> {"keyword": 3.0}; a malformed item is named in the error."""
    weights = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not name.strip() or not math.isfinite(number) or number < 0:
            raise GenerateError(f"--weight {item!r}: give NAME=VALUE with a number >= 0, e.g. --weight keyword=2")
        weights[name.strip()] = number
    return weights


def words(text: str) -> list[str]:
    """A comma-separated list; an empty item between commas is kept so that it is reported."""
    return [] if not text.strip() else text.split(",")


def check_args(args: GenerateSpec) -> None:
    if args.sampler not in COMPOSERS:
        raise GenerateError(f"--sampler {args.sampler!r}: choose one of {', '.join(COMPOSERS)}")
    for name in ("tokens", "samples", "chains", "steps", "budget_drafts"):
        if getattr(args, name) < 1:
            raise GenerateError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.move_share < 1:
        raise GenerateError("--move-share must be at least 0 and below 1 (the chains need part of the budget)")
    if args.budget_seconds is not None and not args.budget_seconds > 0:
        raise GenerateError("--budget-seconds must be above 0")
    if not args.temperature > 0:
        raise GenerateError("--temperature must be above 0")
    if args.device.startswith("vulkan"):
        raise GenerateError("--device vulkan: the sequence sampler differentiates through the encoder in torch; use cpu or cuda")


def generate_records(args: GenerateSpec) -> list[dict]:
    """One record per sample: its text, tokens, constraint badges and cost."""
    check_args(args)
    weights = parse_weights(args.weight)
    device, _ = resolve_device(args.device)
    _, model, tok = load_run(Path(args.checkpoint))
    model.to(device).eval()
    try:
        constraints = from_text(
            tok.encode,
            tok.decode,
            model.embeddings,
            words(args.keywords),
            words(args.avoid),
            args.right_context,
            words(args.topic),
            weights=weights,
        )
    except ValueError as err:
        raise GenerateError(str(err)) from None
    prompt = tok.encode(args.prompt)
    window = model.cfg.context_global + 1 - args.tokens - len(right_context_of(constraints))
    if window >= 1 and len(prompt) > window:
        print(
            f"ebm-generate: note: the prompt is {len(prompt)} tokens; only its last {window} condition the text", file=sys.stderr
        )
    budget = Budget(seconds=args.budget_seconds, drafts=None if args.budget_seconds else args.budget_drafts)
    chain = ChainSettings(chains=args.chains, steps=args.steps, move_share=args.move_share)
    try:
        samples = compose(
            model,
            prompt,
            args.tokens,
            constraints,
            args.sampler,
            args.samples,
            budget,
            chain,
            args.temperature,
            args.top_k,
            args.seed,
        )
    except ValueError as err:
        raise GenerateError(str(err)) from None
    return [sample_record(s, constraints, tok, args.sampler) for s in samples]


def sample_record(sample: ComposedSample, constraints: list, tok, method: str) -> dict:
    return {
        "text": tok.decode(sample.tokens),
        "tokens": sample.tokens,
        "constraints": [
            {"kind": c.kind, "label": c.label, "met": sample.met[c.label], "energy": sample.energies[c.label]}
            for c in constraints
        ],
        "sampler": method,
        "log_weight": sample.log_weight,
        "drafts": sample.drafts,
        "moves_accepted": sample.accepted,
        "seconds": round(sample.seconds, 3),
    }


def run(args: GenerateSpec) -> int:
    torch.manual_seed(args.seed)
    try:
        records = generate_records(args)
    except (GenerateError, CheckpointError, TokenizerError, DeviceError, OSError) as err:
        print(f"ebm-generate: error: {err}", file=sys.stderr)
        return 2
    for i, record in enumerate(records):
        if args.json:
            print(json.dumps(record, default=float), flush=True)
            continue
        badges = "  ".join(f"[{'met' if c['met'] else 'UNMET'}] {c['kind']} {c['label']}" for c in record["constraints"])
        print(f"--- sample {i + 1} ({record['sampler']}, {record['seconds']:.1f} s){'  ' + badges if badges else ''}")
        print(args.prompt + record["text"])
    return 0
