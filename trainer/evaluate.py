"""ebm-evaluate: exact perplexities and generation quality of a checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from ebm import backend_for

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .data import DataError, Windows, default_cache_dir, load_corpus, read_text_file, tokenize_split
from .device import DeviceError, resolve_device
from .evaluation import generate_samples, score
from .tokenizer import TokenizerError, load_tokenizer
from .wikitext import detokenize


def load_run(path: str | Path):
    """A checkpoint with its model and the run's saved tokenizer: (state, model, tokenizer)."""
    path = Path(path)
    state = load_checkpoint(path)
    model = model_from_checkpoint(state)
    tok_file = (path if path.is_dir() else path.parent) / "tokenizer.json"
    if not tok_file.exists():
        raise TokenizerError(f"{tok_file} is missing: the run's tokenizer is needed to read and write text")
    tokenizer = load_tokenizer(str(tok_file))
    tokenizer.adopt_checkpoint(state, tok_file)
    return state, model, tokenizer


def run(args) -> dict:
    torch_device, vulkan = resolve_device(args.device)
    if torch_device.type != "cpu":
        raise DeviceError(f"--device {args.device}: evaluation runs on cpu or vulkan")
    torch.manual_seed(args.seed)
    path = Path(args.checkpoint)
    state, model, tokenizer = load_run(path)
    backend = backend_for(vulkan)
    tokens = _tokens(args, tokenizer)
    cfg = model.cfg
    windows = Windows(tokens, cfg.context_global, cfg.seq_length)
    ids = windows.evenly_spaced(max(1, args.max_tokens // cfg.seq_length))
    result = score(model, windows, ids, cfg.batch_size, backend=backend)
    prompts = [windows.batch(np.array([i]))[0, -9:-1].tolist() for i in ids[: args.samples]]
    samples, quality = generate_samples(model, prompts, args.sample_tokens, tokenizer.decode, seed=args.seed, backend=backend)
    return {
        "checkpoint": str(path),
        "device": str(vulkan or torch_device),
        "step": state["step"],
        "tokenizer": state["tokenizer"],
        "data": args.data,
        "split": args.split,
        "detokenized": args.detokenize,
        **result,
        "generation": quality,
        "samples": samples,
    }


def _tokens(args, tokenizer) -> np.ndarray:
    if args.split == "all" or args.detokenize:
        file = Path(args.data)
        if not file.is_file():
            raise DataError("--detokenize and --split all need --data to be one text file")
        text = read_text_file(file)
        text = detokenize(text) if args.detokenize else text
        return np.asarray(tokenizer.encode(text), dtype=np.int64)
    corpus = load_corpus(args.data)
    return tokenize_split(corpus, args.split, tokenizer, default_cache_dir(), progress=False)


def main(argv: list[str] | None = None) -> int:
    from .cli import evaluate

    return evaluate(argv)


def cli_main(args) -> int:
    try:
        result = run(args)
    except (CheckpointError, DataError, TokenizerError, DeviceError, OSError) as err:
        print(f"ebm-evaluate: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, default=float))
        return 0
    print(f"checkpoint  {result['checkpoint']} (step {result['step']})")
    print(
        f"data        {result['data']} / {result['split']}{' (detokenised)' if result['detokenized'] else ''}, "
        f"tokenizer {result['tokenizer']}, {result['tokens']} target tokens"
    )
    print(
        f"ppl_energy  {result['ppl_energy']:.3f}\nppl_decoder {result['ppl_decoder']:.3f}\ncoverage    {result['coverage']:.3f}"
    )
    for key, value in result["generation"].items():
        print(f"{key:22s} {value:.4g}" if isinstance(value, float) else f"{key:22s} {value}")
    for s in result["samples"]:
        print(f"--- {s['prompt']!r} -> {s['text']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
