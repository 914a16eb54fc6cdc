"""ebm-evaluate: exact perplexities and generation quality of a checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ebm import backend_for
from runs.checkpoint import CheckpointError
from trainer.corpus_memory import memory_for
from trainer.data import DataError
from trainer.device_spec import DeviceError, resolve_device
from trainer.evaluation import generate_samples, per_unit, score_text
from trainer.loading import load_run, text_to_score
from trainer.tokenizer import TokenizerError

from .specs import EvaluateSpec


def evaluate(args: EvaluateSpec) -> dict:
    """ebm-evaluate's figures, as printed with --json."""
    torch_device, vulkan = resolve_device(args.device)
    torch.manual_seed(args.seed)
    path = Path(args.checkpoint)
    state, model, tokenizer = load_run(path)
    model.to(torch_device)
    backend = backend_for(vulkan)
    cfg = model.cfg
    tokens, units = text_to_score(args.data, args.split, args.detokenize, tokenizer, args.max_tokens)
    eot = tokenizer.tokenizer.token_to_id("<|endoftext|>")
    stride = args.stride or max(1, cfg.context_global // 2)
    show = not args.json and sys.stderr.isatty()
    memory, fit = None, None
    if args.memory:
        if args.memory == args.data and args.split == "valid":
            raise DataError("the memory's mixture is fitted on the valid split: score --split test (or another text)")
        memory, fit = memory_for(args.memory, model, tokenizer, stride, show, args.memory_tokens)
    with tqdm(total=len(tokens) - 1, desc="scoring", unit="tok", disable=not show) as bar:
        result = score_text(model, tokens, stride, cfg.batch_size, lambda n: bar.update(n - bar.n), backend, memory)
    ends = np.linspace(9, len(tokens) - 1, max(args.samples, 1)).astype(int)[: args.samples]
    prompts = [tokens[e - 8 : e].tolist() for e in ends]
    samples, quality = generate_samples(model, prompts, args.sample_tokens, tokenizer.decode, seed=args.seed, backend=backend)
    return {
        "checkpoint": str(path),
        "device": str(vulkan or torch_device),
        "step": state["step"],
        "tokenizer": state["tokenizer"],
        "data": args.data,
        "split": args.split,
        "detokenized": args.detokenize,
        "context": cfg.context_global,
        "stride": stride,
        **result,
        **units,
        **per_unit(result, units),
        "unk_handling": "<unk> is kept as its literal text and scored like any other text",
        "first_token": "scored after an end-of-text token" if eot is not None else "not scored (no end-of-text token)",
        "generation": quality,
        "samples": samples,
        "memory": fit,
    }


def run(args: EvaluateSpec) -> int:
    try:
        result = evaluate(args)
    except (CheckpointError, DataError, TokenizerError, DeviceError, OSError) as err:
        print(f"ebm-evaluate: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, default=float))
        return 0
    print(f"checkpoint  {result['checkpoint']} (step {result['step']})")
    print(
        f"data        {result['data']} / {result['split']}{' (detokenised)' if result['detokenized'] else ''}: "
        f"{result['tokens']:,} tokens of {result['tokenizer']}, {result['words']:,} words, {result['bytes']:,} bytes, "
        f"scored once each with a {result['context']}-token window, stride {result['stride']}"
    )
    print(f"            {result['unk_handling']} ({result['unk_words']:,} words); first token {result['first_token']}")
    print("            token ppl   word ppl   bits/byte")
    for head in ("energy", "decoder"):
        print(
            f"p_{head:8s}  {result[f'ppl_{head}']:9.2f}  {result[f'word_ppl_{head}']:9.2f}  "
            f"{result[f'bits_per_byte_{head}']:9.4f}"
        )
    if result["memory"]:
        m = result["memory"]
        print(
            f"memory      p_energy mixes in {m['splats']:,} memory splats (kappa {m['kappa']:g}, lambda {m['weight']:g}, "
            f"fitted on {m['held_out_tokens']:,} held-out tokens)"
        )
    print(f"coverage    {result['coverage']:.3f}")
    for key, value in result["generation"].items():
        print(f"{key:22s} {value:.4g}" if isinstance(value, float) else f"{key:22s} {value}")
    for s in result["samples"]:
        print(f"--- {s['prompt']!r} -> {s['text']!r}")
    return 0
