"""Ablations: does each energy-based part help? One equal budget, one invocation.

Rows are ebm-train runs of the preset (cpu by default) for the same number of optimiser steps
(or, with --minutes, the same training time, so that each part's cost counts),
with the same seed, data order and learning rate, scored like bench/ppl.py (whole texts, every
token once, sliding window; in-domain test split and WikiText-2 valid zero-shot; token- and
word-level perplexity):

  full          as shipped: each retrieved splat a mixture component in probability space beside
                the base softmax (splat_term=mixture, ebm.mixture)
  mixture       splat_term=mixture named explicitly (the same as full since 0.4.0)
  context boost splat_term=context: splats as context-conditioned attractors that boost p_E
  splats off    splat_term=off: p_E is the base softmax with its learned token prior, which is
                a free per-token bias, so this row is also "splats replaced by a free bias"
  token splats  splat_term=token: splats as a context-free energy of each token (the earlier design)
  no DSM        lambda_dsm=0: no score matching
  decoder off   lambda_dec=0: the decoder head untrained, p_E alone
  TRIME-trained lambda_mem=1: the loss also scores p_E mixed with the batch's other windows as
                memory splats (ebm.objective.memory_nll), so contexts learn to be retrieved

Beside them, scored the same way in the same invocation: the add-one unigram of the train split
(the trivial baseline) and two transformers of the EBM's width, depth, heads, window and batch,
trained for the same number of optimiser steps: this project's nanoGPT-style one and transformers'
GPT2LMHeadModel (the strong baselines; --no-baselines leaves them out).

With --memory, each variant is also scored with memory splats (ebm.memory) written from the
whole train split and fitted on the first 20,000 tokens of the valid split: a row "+ memory".

Text (e): the full model generates from prompts of the in-domain test split by Langevin on the
sampler's landscape (the token drawn from the energy at z*), by Langevin + decoder (the earlier
design, with its chain settings) and by direct sampling from p_E, at the same sampling
temperatures and top-k. A Kneser-Ney 5-gram fit on the train split scores the continuations (a
reference that shares no weights with the model): generation perplexity with a 90% bootstrap
interval over prompts, direct sampling's perplexity at the same distinct-2 (interpolated between
its temperatures), distinct-1/2 and repetition. --generate-from CHECKPOINT runs this part alone.

python bench/ablate.py --steps 400 --memory --out /tmp/bench/ablate
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ppl import (  # noqa: E402
    WIKITEXT,
    ebm_train,
    gpt_setup,
    minutes,
    read_run,
    run_tokenizer,
    score_ebm,
    score_transformer,
    scored_sets,
    scored_texts,
    scores,
    train_gpt,
    transformer_key,
    transformer_row,
    unigram_row,
    validation_scorer,
)
from ebm.sampler import SAMPLERS  # noqa: E402

VARIANTS = {
    "full": [],
    "mixture": ["splat_term=mixture"],  # = full since 0.4.0; kept so the earlier commands run as written
    "context boost": ["splat_term=context"],
    "splats off": ["splat_term=off"],
    "token splats": ["splat_term=token"],
    "no DSM": ["lambda_dsm=0"],
    "decoder off": ["lambda_dec=0"],
    "TRIME-trained": ["lambda_mem=1"],
}


def train_and_score(args, name: str, sets: list[str]) -> dict:
    run = argparse.Namespace(**{**vars(args), "ebm_set": args.ebm_set + sets})
    run_id = "ablate-" + name.replace(" ", "-")
    runs = Path(args.out) / "runs"
    try:  # a run this invocation's budget already finished (an interrupted invocation): score it again
        row = read_run(run, runs, run_id, args.lr)
        assert row["train_s"] >= 0.99 * 60 * args.minutes if args.minutes else row["steps"] == args.steps
    except (OSError, KeyError, ValueError, AssertionError):
        budget = minutes(args.minutes) if args.minutes else ["--max-steps", str(args.steps)]
        row = ebm_train(run, runs, args.lr, budget, run_id)
    row["variant"], row["sets"] = name, sets
    return row | score_ebm(args, row["ckpt"])


def score_with_memory(args, checkpoint: str) -> dict:
    """The texts of score_ebm scored with memory splats from the train split, written once."""
    from trainer.corpus_memory import memory_for
    from trainer.evaluation import score_text
    from trainer.loading import load_run, text_to_score

    _, model, tok = load_run(Path(checkpoint))
    stride = model.cfg.context_global // 2
    t = time.perf_counter()
    memory, fit = memory_for("builtin", model, tok, stride, show=True)
    row = {"memory": fit | {"build_s": time.perf_counter() - t}}
    for name, data, split, detok in scored_texts(args):
        tokens, units = text_to_score(data, split, detok, tok, args.max_tokens)
        result = score_text(model, tokens, stride, model.cfg.batch_size, memory=memory)
        row[name] = scores(result["nll_energy"] * result["tokens"], result["tokens"], units)
    print(f"[ablate] + memory: {row['in-domain']['ppl']:.1f} in-domain ppl ({fit})", file=sys.stderr, flush=True)
    return row


def baselines(args, tok) -> dict[str, dict]:
    """The add-one unigram and the same-size transformer at the rows' budget, scored alike."""
    from trainer.data import default_cache_dir, load_corpus, tokenize_split

    sets = scored_sets(args, tok)
    train = np.asarray(tokenize_split(load_corpus("builtin"), "train", tok, default_cache_dir(), progress=False))
    rows = {"add-one unigram": unigram_row(train, tok.vocab_size, sets)}
    gcfg, train_w, valid_w, batch, prior = gpt_setup(args.preset, tok, gpt_prior=True)
    valid_ppl = validation_scorer(valid_w, gcfg.block_size)
    for impl in args.gpt_impls:
        print(f"[ablate] transformer ({impl}), {budget_text(args)} ...", file=sys.stderr, flush=True)
        seconds, max_steps = (60 * args.minutes, 0) if args.minutes else (math.inf, args.steps)
        model, steps, spent, _, train_nll = train_gpt(
            gcfg, train_w, args.gpt_lr, seconds, batch, None, prior, max_steps=max_steps, impl=impl
        )
        row = transformer_row(gcfg, model, steps, spent, batch, args.gpt_lr, True, impl)
        row |= {"train_nll": train_nll, "valid_nll": math.log(valid_ppl(model))}
        row["epochs"] = row["targets_seen"] / (len(train_w) * gcfg.block_size)
        rows[transformer_key(impl, 0.0)] = row | score_transformer(model, sets, gcfg.block_size)
    return rows


# ----------------------------------------------------------------------------- generation


def reference_scorer(args, tok):
    """A Kneser-Ney 5-gram on the train split, and the test split's token ids."""
    from bench.kneser_ney import KneserNey
    from trainer.data import default_cache_dir, load_corpus, tokenize_split

    corpus = load_corpus("builtin")
    train, test = (np.asarray(tokenize_split(corpus, s, tok, default_cache_dir(), progress=False)) for s in ("train", "test"))
    return KneserNey(5, tok.vocab_size).fit(train.tolist()), test


def continuation_scores(kn, prompts: list[list[int]], outputs: list[list[int]]) -> dict:
    """Reference perplexity of the generated tokens given everything before them, with a 90%
    bootstrap interval over prompts, and diversity."""
    from trainer.evaluation import distinct_n, repetition_rate

    nlls = []  # per prompt: summed reference NLL of its continuation
    for prompt, out in zip(prompts, outputs):
        text = prompt + out
        nlls.append(-sum(math.log(kn.prob(text[j], text[max(0, j - 4) : j])) for j in range(len(prompt), len(text))))
    nll, n = np.asarray(nlls), sum(len(o) for o in outputs)
    picks = np.random.default_rng(0).integers(0, len(nll), (1000, len(nll)))
    lengths = np.asarray([len(o) for o in outputs])
    boot = np.exp(nll[picks].sum(1) / np.maximum(lengths[picks].sum(1), 1))
    return {
        "reference_ppl": math.exp(nll.sum() / max(n, 1)),
        "reference_ppl_90": [float(np.percentile(boot, 5)), float(np.percentile(boot, 95))],
        "distinct_1": float(np.mean([distinct_n(o, 1) for o in outputs])),
        "distinct_2": float(np.mean([distinct_n(o, 2) for o in outputs])),
        "repetition": float(np.mean([repetition_rate(o) for o in outputs])),
        "tokens": n,
    }


def generation(args, checkpoint: str, tok) -> list[dict]:
    """Langevin (landscape, token from the energy at z*), Langevin + decoder (the earlier
    design) and direct p_E sampling, at each sampling temperature."""
    from ebm.sampler import generate
    from trainer.loading import load_run

    model = load_run(Path(checkpoint))[1].eval()
    kn, test = reference_scorer(args, tok)
    starts = np.linspace(0, len(test) - args.prompt_tokens - 1, args.prompts).astype(int)
    prompts = [test[s : s + args.prompt_tokens].tolist() for s in starts]
    rows = []
    for method in args.samplers:
        for temp in args.sample_temps:
            t = time.perf_counter()
            outputs = [
                generate(model, p, args.gen_tokens, sample_temperature=temp, top_k=args.top_k, seed=i, sampler=method)[0]
                for i, p in enumerate(prompts)
            ]
            row = {"method": method, "sample_temperature": temp, "top_k": args.top_k}
            row |= continuation_scores(kn, prompts, outputs) | {"gen_s": time.perf_counter() - t}
            row["example"] = tok.decode(outputs[0])
            rows.append(row)
            print(
                f"[ablate] {method} T={temp}: {row['reference_ppl']:.1f} ref ppl, distinct-2 {row['distinct_2']:.3f}",
                file=sys.stderr,
                flush=True,
            )
    return rows


def direct_at_equal_diversity(rows: list[dict], distinct_2: float) -> float | None:
    """Direct sampling's reference perplexity at this distinct-2, interpolated between its rows
    (None outside their range)."""
    direct = sorted((r["distinct_2"], r["reference_ppl"]) for r in rows if r["method"] == "direct")
    if len(direct) < 2 or not direct[0][0] <= distinct_2 <= direct[-1][0]:
        return None
    return float(np.interp(distinct_2, *zip(*direct)))


# ----------------------------------------------------------------------------- report


def report(results: dict, args) -> str:
    sets = ["in-domain"] + (["wikitext-2"] if args.wikitext else [])
    rows = results["rows"]
    ref_name = "full" if "full" in rows else next(iter(rows))
    seed = next((s.split("=", 1)[1] for s in reversed(args.ebm_set) if s.startswith("seed=")), "0")
    lines = [
        f"{budget_text(args)} per row, {args.preset} preset, lr {args.lr:g}, seed {seed}; tokenizer "
        f"{results['tokenizer']}. Whole texts, every token once, sliding window of the context, stride half of it.",
        "",
        "| variant | "
        + " | ".join(f"{s} ppl | {s} word ppl" for s in sets)
        + f" | steps | epochs | train / valid nll | targets/s | vs {ref_name} |",
        "|---|" + "---|" * (2 * len(sets) + 5),
    ]
    full = rows[ref_name]
    for name, r in rows.items():
        cells = " | ".join(f"{r[s]['ppl']:.1f} | {r[s]['word_ppl']:.0f}" for s in sets)
        ratio = f"{r[sets[0]]['ppl'] / full[sets[0]]['ppl']:.3f}x ppl"
        speed = "-"
        if "targets_per_s" in r:  # not a count model
            speed = f"{r['targets_per_s']:.0f}"
            ratio += f", {r['targets_per_s'] / full['targets_per_s']:.2f}x speed"
        lines.append(f"| {name} | {cells} | {r.get('steps', '-')} | {epochs_and_gap(r)} | {speed} | {ratio} |")
    for name, r in results["rows"].items():
        if "memory" in r:
            m = r["memory"]
            lines.append(
                f"\n{name}: {m['splats']:,} memory splats, kappa {m['kappa']:g}, lambda {m['weight']:g}, "
                f"written and fitted in {m['build_s']:.0f} s; the search finds the nearest key for "
                f"{m['search_recall']:.0%} of held-out contexts"
            )
    if results.get("generation"):
        lines += generation_table(results["generation"])
    return "\n".join(lines) + "\n"


def budget_text(args) -> str:
    """The rows' budget in words, for the progress lines and the table's heading."""
    return f"{args.minutes:g} minutes of training" if args.minutes else f"{args.steps} optimiser steps"


def epochs_and_gap(row: dict) -> str:
    """Epochs seen and the train / valid NLL of a trained row ("- | -" for a count model)."""
    epochs = f"{row['epochs']:.2f}" if row.get("epochs") is not None else "-"
    if row.get("valid_nll") is None:
        return f"{epochs} | -"
    return f"{epochs} | {row['train_nll']:.2f} / {row['valid_nll']:.2f}"


def generation_table(rows: list[dict]) -> list[str]:
    lines = [
        "",
        "| sampler | sampling T | top-k | reference ppl (KN5) [90%] | direct at equal distinct-2 | distinct-1 | "
        "distinct-2 | repetition | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in rows:
        lo, hi = g["reference_ppl_90"]
        matched = direct_at_equal_diversity(rows, g["distinct_2"]) if g["method"] != "direct" else None
        lines.append(
            f"| {g['method']} | {g['sample_temperature']:g} | {g['top_k']} | {g['reference_ppl']:.1f} [{lo:.1f}, {hi:.1f}] | "
            f"{'-' if matched is None else f'{matched:.1f}'} | {g['distinct_1']:.3f} | {g['distinct_2']:.3f} | "
            f"{g['repetition']:.3f} | {g['gen_s']:.0f} |"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400, help="optimiser steps per row")
    p.add_argument("--minutes", type=float, default=0, help="training minutes per row instead of --steps (0: steps)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if v != "mixture"], choices=list(VARIANTS))
    p.add_argument("--ebm-set", action="append", default=[], metavar="KEY=VALUE", help="EBMConfig override for every row")
    p.add_argument("--wikitext", default=str(WIKITEXT) if WIKITEXT.exists() else None, help="wiki.valid.tokens (zero-shot)")
    p.add_argument("--max-tokens", type=int, default=0, help="score only this many tokens of each text (0: all)")
    p.add_argument("--memory", action="store_true", help="also score each variant with memory splats (ebm.memory)")
    p.add_argument("--no-baselines", dest="baselines", action="store_false", help="leave out the unigram and transformer rows")
    p.add_argument("--gpt-impls", nargs="+", default=["nanogpt", "hf"], choices=["nanogpt", "hf"], help="transformer rows")
    p.add_argument("--gpt-lr", type=float, default=3e-3, help="the transformer's learning rate (bench/ppl.py's sweep chose 3e-3)")
    p.add_argument("--prompts", type=int, default=24, help="generation prompts from the test split")
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--gen-tokens", type=int, default=32)
    p.add_argument("--sample-temps", type=float, nargs="+", default=[0.7, 1.0])
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    p.add_argument("--generate-from", metavar="CHECKPOINT", help="only the text comparison, from this checkpoint")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--out", default="bench/results/ablate")
    args = p.parse_args()
    if args.wikitext and not Path(args.wikitext).is_file():
        sys.exit(f"bench/ablate.py: error: {args.wikitext} not found; pass --wikitext PATH/wiki.valid.tokens")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tok = run_tokenizer(args)
    if args.generate_from:
        rows = generation(args, args.generate_from, tok)
        (out / "generation.json").write_text(json.dumps(rows, indent=2))
        print("\n".join(generation_table(rows)))
        return
    results = {"tokenizer": tok.name, "args": vars(args), "rows": {}}
    for name in args.variants:
        print(f"[ablate] {name} ...", file=sys.stderr, flush=True)
        results["rows"][name] = row = train_and_score(args, name, VARIANTS[name])
        if args.memory:
            results["rows"][f"{name} + memory"] = row | score_with_memory(args, row["ckpt"])
        (out / "ablate.json").write_text(json.dumps(results, indent=2))
    if args.baselines:
        results["rows"] |= baselines(args, tok)
        (out / "ablate.json").write_text(json.dumps(results, indent=2))
    if "full" in results["rows"] and args.prompts:
        results["generation"] = generation(args, results["rows"]["full"]["ckpt"], tok)
    (out / "ablate.json").write_text(json.dumps(results, indent=2))
    text = report(results, args)
    (out / "ablate.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
