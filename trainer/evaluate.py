"""ebm-evaluate: exact perplexities and generation quality of a checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ebm import backend_for

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .data import DataError, default_cache_dir, load_corpus, read_text_file, tokenize_split
from .device import DeviceError, resolve_device
from .evaluation import generate_samples, per_unit, score_text, text_units
from .memory import build_memory, memory_texts
from .tokenizer import TokenizerError, load_tokenizer
from .wikitext import detokenize as detokenize_text


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


def memory_for(corpus: str, model, tokenizer, stride: int, show: bool, train_tokens: int = 0):
    """Memory splats from the train split of `corpus`, fitted on its valid split (ebm.memory)."""
    train, held_out = memory_texts(corpus, tokenizer, train_tokens)
    return build_memory(model, train, held_out, stride, model.cfg.batch_size, show)


def text_to_score(data: str, split: str, detokenize: bool, tokenizer, max_tokens: int = 0) -> tuple[np.ndarray, dict]:
    """The token ids that ebm-evaluate scores, the first an end-of-text token where the tokenizer
    has one (so the text's first token has a context, as every later document's does), and the
    words and bytes of the original text: the file as given (WikiText's tokenised form before
    --detokenize) or the split's documents. Shared with bench/ppl.py, so baselines score the same."""
    if split == "all" or detokenize:
        file = Path(data)
        if not file.is_file():
            raise DataError("--detokenize and --split all need --data to be one text file")
        original = read_text_file(file)
        tokens = np.asarray(tokenizer.encode(detokenize_text(original) if detokenize else original), dtype=np.int64)
    else:
        corpus = load_corpus(data)
        original = "\n".join(corpus.texts(split))
        tokens = np.asarray(tokenize_split(corpus, split, tokenizer, default_cache_dir(), progress=False), dtype=np.int64)
    eot = tokenizer.tokenizer.token_to_id("<|endoftext|>")
    if eot is not None:
        tokens = np.concatenate([[eot], tokens]).astype(np.int64)
    if max_tokens:  # a prefix: words and bytes of its scored documents, joined by newlines as above
        tokens = tokens[: max_tokens + 1]
        original = "\n".join(tokenizer.decode(doc) for doc in _documents(tokens[1:].tolist(), eot))
    return tokens, text_units(original)


def _documents(ids: list[int], eot: int | None) -> list[list[int]]:
    """Token ids split at end-of-text tokens: decoding them joined would run the last word of
    one document into the first of the next and miscount the words."""
    docs = [[]]
    for i in ids:
        if i == eot:
            docs.append([])
        else:
            docs[-1].append(i)
    return docs


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
        f"data        {result['data']} / {result['split']}{' (detokenised)' if result['detokenized'] else ''}: "
        f"{result['tokens']:,} tokens of {result['tokenizer']}, {result['words']:,} words, {result['bytes']:,} bytes, "
        f"scored once each with a {result['context']}-token window, stride {result['stride']}"
    )
    print(f"            {result['unk_handling']} ({result['unk_words']:,} words); first token {result['first_token']}")
    print("            token ppl   word ppl   bits/byte")
    for head in ("energy", "decoder"):
        print(f"p_{head:8s}  {result[f'ppl_{head}']:9.2f}  {result[f'word_ppl_{head}']:9.2f}  "
              f"{result[f'bits_per_byte_{head}']:9.4f}")  # fmt: skip
    if result["memory"]:
        m = result["memory"]
        print(f"memory      p_energy mixes in {m['splats']:,} memory splats (kappa {m['kappa']:g}, lambda {m['weight']:g}, "
              f"fitted on {m['held_out_tokens']:,} held-out tokens)")  # fmt: skip
    print(f"coverage    {result['coverage']:.3f}")
    for key, value in result["generation"].items():
        print(f"{key:22s} {value:.4g}" if isinstance(value, float) else f"{key:22s} {value}")
    for s in result["samples"]:
        print(f"--- {s['prompt']!r} -> {s['text']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
