"""Training step time of each splat term at a preset, side by side: the terms take turns, step by
step, so the machine's noise falls on all of them alike; medians, and the ratio to splats off.

python bench/splat_terms.py                          # cpu preset: off, context (boost), mixture
python bench/splat_terms.py --steps 20 --terms off mixture
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.speed import step_on_fixed_batch  # noqa: E402
from ebm.presets import PRESETS  # noqa: E402


def stepper(preset: str, term: str):
    """One timed optimiser step of a fresh model with this splat term, on a fixed batch, and the
    targets a step trains."""
    cfg = PRESETS[preset].model_config().with_overrides([f"splat_term={term}"])
    full_step = step_on_fixed_batch(cfg)[3]

    def step() -> float:
        t = time.perf_counter()
        full_step()
        return time.perf_counter() - t

    return step, cfg.batch_size * cfg.targets_per_window


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    p.add_argument("--terms", nargs="+", default=["off", "context", "mixture"])
    p.add_argument("--steps", type=int, default=12, help="timed steps per term, after two warm-up steps")
    args = p.parse_args()
    steppers = {term: stepper(args.preset, term) for term in args.terms}
    times: dict[str, list[float]] = {term: [] for term in args.terms}
    for i in range(args.steps + 2):
        for term, (step, _) in steppers.items():
            seconds = step()
            if i >= 2:
                times[term].append(seconds)
    base = statistics.median(times[args.terms[0]])
    print(f"{args.preset} preset, {args.steps} interleaved steps per term (median seconds per step)\n")
    print(f"| splat term | s/step | targets/s | vs {args.terms[0]} |\n|---|---|---|---|")
    for term, (_, targets) in steppers.items():
        med = statistics.median(times[term])
        print(f"| {term} | {med:.3f} | {targets / med:.0f} | {base / med:.2f}x speed |")


if __name__ == "__main__":
    main()
