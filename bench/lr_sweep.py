"""Learning-rate sweep of the EBM itself: one `ebm-train` run per rate at the same budget,
the last validation perplexity of each, as a table (docs/benchmarks.md, "Learning rate").

python bench/lr_sweep.py --preset cpu --minutes 4 --lr 1e-3 3e-3 1e-2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(out: Path, preset: str, minutes: float, lr: float, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "commands", "train", "--out", str(out), "--preset", preset, "--quiet"]
    cmd += ["--max-minutes", str(minutes), "--set", f"learning_rate={lr}", "--run-id", f"lr{lr:g}", *extra]
    subprocess.run(cmd, cwd=ROOT, check=True)
    records = [json.loads(line) for line in (out / "logs" / "ebm" / f"lr{lr:g}.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["type"] in ("eval", "epoch")]
    batches = [r for r in records if r["type"] == "batch"]
    return {
        "lr": lr,
        "steps": batches[-1]["step"],
        "ppl_energy": evals[-1]["ppl_energy"],
        "ppl_decoder": evals[-1]["ppl_decoder"],
        "best_ppl_energy": min(e["ppl_energy"] for e in evals),
        "tokenizer": records[0]["tokenizer"],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--minutes", type=float, default=4.0, help="training time of each run (evaluation not counted)")
    p.add_argument("--lr", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides for every run")
    args = p.parse_args(argv)
    extra = [a for kv in args.set for a in ("--set", kv)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lr in args.lr:
            rows.append(one_run(Path(tmp), args.preset, args.minutes, lr, extra))
            print(f"lr {lr:g}: ppl_energy {rows[-1]['ppl_energy']:.1f}", file=sys.stderr)
    print(f"preset {args.preset}, {args.minutes:g} training minutes per run, tokenizer {rows[0]['tokenizer']}\n")
    print("| learning rate | steps | valid ppl_energy (last) | best | valid ppl_decoder |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['lr']:g} | {r['steps']} | {r['ppl_energy']:.1f} | {r['best_ppl_energy']:.1f} | {r['ppl_decoder']:.1f} |")


if __name__ == "__main__":
    main()
