"""Training step time of config variants and of the same-size transformer, side by side: they
take turns, step by step, each on its own fixed batch, so the machine's noise falls on all of
them alike; medians, targets/s, and the ratio of each to the first row.

python bench/step_ratio.py                                     # cpu preset: transformer, then the preset
python bench/step_ratio.py - aux_stride=2 aux_stride=4         # variants (comma-separated overrides; '-': as is)
python bench/step_ratio.py --no-transformer splat_term=off splat_term=context splat_term=mixture
python bench/step_ratio.py --compile-transformer - compile   # 'compile': the encoder through torch.compile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ppl import gpt_optimizer, gpt_step  # noqa: E402
from bench.speed import step_on_fixed_batch  # noqa: E402
from bench.transformer import GPT, GPTConfig  # noqa: E402
from ebm import EBMConfig  # noqa: E402
from ebm.presets import PRESETS  # noqa: E402
from trainer.compiled import compile_encoder  # noqa: E402


def timed_step(full_step: Callable[[], None]) -> Callable[[], float]:
    def step() -> float:
        t = time.perf_counter()
        full_step()
        return time.perf_counter() - t

    return step


def ebm_stepper(cfg: EBMConfig, compiled: bool = False) -> tuple[Callable[[], float], int]:
    """One timed optimiser step of a fresh EBM on a fixed batch (its context encoder through
    torch.compile when `compiled`, as ebm-train --compile does), and the targets a step trains."""
    model, _, _, step = step_on_fixed_batch(cfg)
    if compiled:
        compile_encoder(model.context)
    return timed_step(step), cfg.batch_size * cfg.targets_per_window


def transformer_stepper(cfg: EBMConfig, compiled: bool = False) -> tuple[Callable[[], float], int]:
    """The transformer of bench/ppl.py at the EBM's width, depth, heads, window and batch, taking
    the step it trains with there (gpt_step: bf16 autocast where the CPU has it, like the EBM's
    heads) on a fixed batch; it predicts every position of its window."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(cfg.vocab_size, cfg.context_global, cfg.context_layers, cfg.context_heads, cfg.latent_dim))
    opt = gpt_optimizer(model, 3e-3)
    model = torch.compile(model) if compiled else model
    window = torch.randint(cfg.vocab_size, (cfg.batch_size, cfg.context_global + 1), generator=torch.Generator().manual_seed(0))
    return timed_step(lambda: gpt_step(model, opt, window)), cfg.batch_size * cfg.context_global


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="*", default=["-"], help="comma-separated EBMConfig overrides, one variant each")
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, default=12, help="timed steps per row, after two warm-up steps")
    p.add_argument("--no-transformer", dest="transformer", action="store_false", help="leave out the transformer row")
    p.add_argument("--compile-transformer", action="store_true", help="also a row of the transformer through torch.compile")
    args = p.parse_args()
    base = PRESETS[args.preset].model_config()
    rows = {"transformer (same size)": transformer_stepper(base)} if args.transformer else {}
    if args.compile_transformer:
        rows["transformer (same size), compiled"] = transformer_stepper(base, compiled=True)
    for variant in args.variants:
        parts = variant.split(",")
        overrides = [kv for kv in parts if kv not in ("", "-", "compile")]
        rows[f"EBM {variant}"] = ebm_stepper(base.with_overrides(overrides), compiled="compile" in parts)
    times: dict[str, list[float]] = {name: [] for name in rows}
    for i in range(args.steps + 2):
        for name, (step, _) in rows.items():
            seconds = step()
            if i >= 2:
                times[name].append(seconds)
    first = next(iter(rows))
    base_tps = rows[first][1] / statistics.median(times[first])
    threads = torch.get_num_threads()
    print(f"{args.preset} preset, {args.steps} interleaved steps per row (median s per step), {threads} threads\n")
    print(f"| row | s/step | targets/s | vs {first} |\n|---|---|---|---|")
    for name, (_, targets) in rows.items():
        med = statistics.median(times[name])
        print(f"| {name} | {med:.3f} | {targets / med:.0f} | {targets / med / base_tps:.2f}x |")


if __name__ == "__main__":
    main()
