"""Perplexity against the number of memory splats (ebm.memory), for one checkpoint.

The memory holds the first N contexts of the built-in train split; kappa and lambda are fitted
on the first 20,000 tokens of the valid split for each N; the in-domain test split is scored by
ebm-evaluate's protocol (whole text, every token once, sliding window at half the context).
The contexts are computed once and each memory is a prefix of them.

python bench/memory_size.py --checkpoint /tmp/bench/ablate/runs/checkpoints/ablate-full/latest.pt
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from ebm.memory import SplatMemory, fit_mixture
    from trainer.corpus_memory import contexts_of, memory_texts
    from trainer.loading import load_run, text_to_score

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000, 300_000, 0], help="0: the whole split")
    p.add_argument("--max-tokens", type=int, default=0, help="score only this many test tokens (0: all)")
    p.add_argument("--out", default="bench/results/memory_size")
    args = p.parse_args()
    _, model, tok = load_run(Path(args.checkpoint))
    stride, batch = model.cfg.context_global // 2, model.cfg.batch_size
    train, held_out = memory_texts("builtin", tok)
    test, units = text_to_score("builtin", "test", False, tok, args.max_tokens)
    t = time.perf_counter()
    keys, values, _ = contexts_of(model, train, stride, batch, "train contexts", scored=False)
    written_s = time.perf_counter() - t
    q_valid, y_valid, lp_valid = contexts_of(model, held_out, stride, batch, "valid contexts")
    q_test, y_test, lp_test = contexts_of(model, test, stride, batch, "test contexts")
    rows = [{"splats": 0, "kappa": None, "weight": 0.0, "nll": -lp_test.sum().item()}]
    for n in sorted(args.sizes, key=lambda s: s or len(keys)):
        memory = SplatMemory(keys[: n or len(keys)], values[: n or len(keys)])
        memory.kappa, memory.weight, _ = fit_mixture(memory.recall(q_valid), y_valid, lp_valid)
        rows.append(
            {
                "splats": len(memory),
                "kappa": memory.kappa,
                "weight": memory.weight,
                "nll": -memory.log_prob(q_test, y_test, lp_test).sum().item(),
            }
        )
    for r in rows:
        r["ppl"], r["word_ppl"] = math.exp(r["nll"] / len(y_test)), math.exp(r["nll"] / units["words"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory_size.json").write_text(json.dumps({"args": vars(args), "written_s": written_s, "rows": rows}, indent=2))
    print(f"{len(y_test):,} test tokens, {units['words']:,} words; train contexts written in {written_s:.0f} s\n")
    print("| memory splats | kappa | lambda | in-domain ppl | word ppl | vs no memory |\n|---|---|---|---|---|---|")
    for r in rows:
        kappa = f"{r['kappa']:g}" if r["weight"] else "-"
        ratio = r["ppl"] / rows[0]["ppl"]
        print(f"| {r['splats']:,} | {kappa} | {r['weight']:g} | {r['ppl']:.1f} | {r['word_ppl']:.0f} | {ratio:.3f}x |")


if __name__ == "__main__":
    main()
