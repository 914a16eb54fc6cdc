"""Training step time at a given config: median forward / backward / optimiser time per batch.

python bench/step_time.py                      # the default config (GPT-2 vocabulary, 10K splats)
python bench/step_time.py --set knn_k=16 --steps 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import peak_rss_mb  # noqa: E402
from ebm import EBMConfig, EBMModel, training_loss  # noqa: E402
from trainer.heap import release_free_heap  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6, help="timed steps; the first is dropped as warm-up")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="EBMConfig override")
    args = p.parse_args()
    cfg = EBMConfig().with_overrides(args.set)
    torch.manual_seed(0)
    model = EBMModel(cfg)
    t = time.perf_counter()
    model.refresh_neighbours(force=True)
    refresh = time.perf_counter() - t
    opt = torch.optim.AdamW(model.parameter_groups(), lr=cfg.learning_rate)
    gen = torch.Generator().manual_seed(0)
    L = cfg.context_global + 1
    rows = []
    for _ in range(args.steps):
        tokens = torch.randint(cfg.vocab_size, (cfg.batch_size, L), generator=gen)
        t0 = time.perf_counter()
        out = training_loss(model, tokens, gen)
        t1 = time.perf_counter()
        opt.zero_grad()
        out.loss.backward()
        t2 = time.perf_counter()
        opt.step()
        release_free_heap()  # as the trainer does
        t3 = time.perf_counter()
        rows.append((t1 - t0, t2 - t1, t3 - t2))
    fwd, bwd, step = (statistics.median(r[i] for r in rows[1:]) for i in range(3))
    total = fwd + bwd + step
    print(
        f"config: batch {cfg.batch_size}, targets/window {cfg.targets_per_window}, splats {cfg.n_splats_init}, "
        f"vocab {cfg.vocab_size}, "
        f"d {cfg.latent_dim}, knn_k {cfg.knn_k}; {torch.get_num_threads()} threads; median of {len(rows) - 1} steps\n"
    )
    print("| part | seconds |\n|---|---|")
    for name, value in (
        ("forward", fwd),
        ("backward", bwd),
        ("optimiser", step),
        ("step total", total),
        ("vocabulary neighbour refresh (every knn_refresh_interval steps)", refresh),
    ):
        print(f"| {name} | {value:.3f} |")
    print(f"\ntargets/s: {cfg.batch_size * cfg.targets_per_window / total:.0f}; peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
