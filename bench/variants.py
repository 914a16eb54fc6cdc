"""Config variants at an equal number of steps: each trains from the same seed on the same
batches (built-in corpus, the preset's tokenizer, curriculum off so every variant keeps its
splats), then is scored on the same validation windows. A quick, step-matched ablation; for
wall-clock budgets use bench/ppl.py.

python bench/variants.py --steps 300 context_encoder=transformer context_encoder=multiscale
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ebm import EBMConfig, EBMModel, training_loss  # noqa: E402
from ebm.presets import PRESETS  # noqa: E402
from trainer.data import Windows, default_cache_dir, load_corpus, token_frequencies, tokenize_split  # noqa: E402
from trainer.evaluation import score  # noqa: E402
from trainer.schedule import lr_factor  # noqa: E402
from trainer.tokenizer import load_tokenizer  # noqa: E402


def train_variant(cfg: EBMConfig, train: np.ndarray, steps: int) -> tuple[EBMModel, float]:
    """`steps` optimiser steps (warm-up 20, cosine to a tenth); -> (model, seconds per step)."""
    torch.manual_seed(0)
    model = EBMModel(cfg, token_freq=torch.from_numpy(token_frequencies(train, cfg.vocab_size)).float())
    opt = torch.optim.AdamW(model.parameter_groups(), lr=cfg.learning_rate)
    windows, rng = Windows(train, 0, cfg.context_global), np.random.default_rng(0)
    start = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cfg.learning_rate * lr_factor(step, 20, step / steps)
        model.refresh_neighbours(step)
        out = training_loss(model, torch.from_numpy(windows.batch(rng.integers(len(windows), size=cfg.batch_size))))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    return model, (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="+", help="comma-separated key=value overrides, one variant each ('-': the preset)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--valid-windows", type=int, default=24)
    args = p.parse_args(argv)
    corpus, preset = load_corpus("builtin"), PRESETS[args.preset]
    tok = load_tokenizer(preset.tokenizer, corpus.texts("train"), default_cache_dir() / "tokenizers")
    train, valid = (np.asarray(tokenize_split(corpus, s, tok, default_cache_dir(), progress=False)) for s in ("train", "valid"))
    base = preset.model_config(tok.vocab_size).replace(curriculum=False)
    print(f"preset {args.preset}, {args.steps} steps each, {args.valid_windows} validation windows, tokenizer {tok.name}\n")
    print("| variant | s / step | valid ppl_energy | valid ppl_decoder |\n|---|---|---|---|", flush=True)
    for variant in args.variants:
        cfg = base.with_overrides([kv for kv in variant.split(",") if kv not in ("", "-")])
        model, per_step = train_variant(cfg, train, args.steps)
        windows = Windows(valid, 0, cfg.context_global)
        result = score(model, windows, windows.evenly_spaced(args.valid_windows), 8)
        print(f"| {variant} | {per_step:.3f} | {result['ppl_energy']:.1f} | {result['ppl_decoder']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
