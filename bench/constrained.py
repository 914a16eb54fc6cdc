"""Constrained generation: Langevin on the relaxed span against rejection, importance resampling,
SMC and unconstrained direct sampling, on the same model, at the same per-item budget.

Tasks come from the built-in corpus's held-out test split (nothing trains or tunes on it):

  keywords  3 content words of one held-out sentence that are not in its first 8 tokens; prompt =
            those 8 tokens; 32 tokens generated; success = all 3 present
  infill    a 64-token held-out passage: 32 tokens left, a 16-token gap, 16 right; success = the
            joined text's p_E NLL (gap and right context, given the left) within 10% of the original's
  avoid     prompt = the first 8 tokens of a held-out sentence, 32 generated; the 5 most frequent
            content words of its article must not appear

Every method's target is pi(x) ~ q0(x) [hard met] exp(-sum lambda C(x)) (ebm.composition). Per
item Langevin runs first and each baseline then gets the wall-clock seconds Langevin took on that
item; direct draws once. Fluency is the perplexity of the generated span, given what precedes it,
under a Kneser-Ney 5-gram fitted on the train split (it shares no weights with the model), with a
90% bootstrap interval over items; so is the success rate.

python bench/constrained.py --checkpoint /tmp/cg/checkpoints/cg1200 --items 200 --out /tmp/bench/constrained
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ablate import reference_scorer  # noqa: E402
from ebm.composition import COMPOSERS, Budget, ChainSettings, compose  # noqa: E402
from ebm.constraints import from_text  # noqa: E402
from trainer.evaluation import distinct_n  # noqa: E402

STOP_WORDS = (
    "the a an and or but of in on at to for from by with as is was were are be been being this that these those it its "
    "he she his her they their them which who whom whose when where what while also after before during between into "
    "than then there other such most more many some only first one two three has have had not over under about"
)
STOP = frozenset(STOP_WORDS.split())
TASKS = ("keywords", "infill", "avoid")


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z][a-z]{3,}", text) if w.lower() not in STOP]


def sentences(doc: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", doc) if len(s.split()) >= 12]


def keyword_items(docs: list[str], tok, n: int, rng: np.random.Generator) -> list[dict]:
    items = []
    for doc in docs:
        for sent in sentences(doc):
            ids = tok.encode(sent)
            prompt, original = tok.decode(ids[:8]), ids[8:40]  # the words come from the 32 tokens generated in its place
            words = [w for w in dict.fromkeys(content_words(tok.decode(original))) if w not in prompt]
            if len(ids) >= 16 and len(words) >= 3:
                chosen = sorted(rng.choice(words, 3, replace=False).tolist())
                items.append({"prompt": ids[:8], "keywords": chosen, "original": original})
    return [items[i] for i in np.sort(rng.choice(len(items), min(n, len(items)), replace=False))]


def infill_items(test: np.ndarray, n: int) -> list[dict]:
    starts = np.linspace(0, len(test) - 65, n).astype(int)
    parts = {"prompt": (0, 32), "original": (32, 48), "right": (48, 64)}
    return [{k: test[s + a : s + b].tolist() for k, (a, b) in parts.items()} for s in starts]


def avoid_items(docs: list[str], tok, n: int, rng: np.random.Generator) -> list[dict]:
    items = []
    for doc in docs:
        top = [w for w, _ in Counter(w.lower() for w in content_words(doc)).most_common(5)]
        sents = sentences(doc)
        if len(top) == 5 and sents:
            items.append({"prompt": tok.encode(sents[0])[:8], "avoid": top})
    return [items[i] for i in np.sort(rng.choice(len(items), min(n, len(items)), replace=False))]


def constraints_for(task: str, item: dict, tok, model, weights: dict) -> list:
    emb = model.embeddings
    if task == "keywords":
        return from_text(tok.encode, tok.decode, emb, keywords=item["keywords"], weights=weights)
    if task == "avoid":  # both cases: "The river" must not slip through as "river" avoided
        words = sorted({v for w in item["avoid"] for v in (w, w.capitalize())})
        return from_text(tok.encode, tok.decode, emb, avoid=words, weights=weights)
    return from_text(tok.encode, tok.decode, emb, right_context=tok.decode(item["right"]), weights=weights)


@torch.no_grad()
def joined_nll(model, left: list[int], span: list[int], right: list[int]) -> tuple[float, float]:
    """p_E's NLL of span + right given left, and of the right context alone: (total, right)."""
    from ebm.scoring import target_logprobs

    seq = torch.tensor([left + span + right])
    T = len(span) + len(right)
    g, u, h = (x.reshape(T, -1) for x in model.contexts(seq[:, :-1], T))
    logp = target_logprobs(model, g, u, h, seq[0, -T:])
    return float(-logp.sum()), float(-logp[len(span) :].sum())


def run_item(task: str, item: dict, method: str, model, tok, args, seconds: float | None, seed: int) -> dict:
    cons = constraints_for(task, item, tok, model, args.weights)
    n = 16 if task == "infill" else args.tokens
    budget = Budget(seconds=seconds) if seconds else Budget(drafts=args.batch)
    chain = ChainSettings(
        chains=args.chains,
        steps=args.steps,
        temperature=args.chain_temperature,
        strength=args.strength,
        draw_strength=args.draw_strength,
        gradient_draw=args.gradient_draw,
        defensive=args.defensive,
        move_share=args.move_share,
        move_chains=args.move_chains,
        informed_moves=not args.plain_moves,
    )
    s = compose(model, item["prompt"], n, cons, method, 1, budget, chain, args.temperature, args.top_k, seed)[0]
    out = {"tokens": s.tokens, "seconds": s.seconds, "drafts": s.drafts, "met": all(s.met.values()), "accepted": s.accepted}
    if task == "infill":
        total, right = joined_nll(model, item["prompt"], s.tokens, item["right"])
        original, _ = joined_nll(model, item["prompt"], item["original"], item["right"])
        out |= {"right_nll": right, "met": total <= 1.1 * original}
    return out


def bootstrap(values: np.ndarray, stat, rng: np.random.Generator) -> list[float]:
    picks = rng.integers(0, len(values), (1000, len(values)))
    boot = [stat(values[p]) for p in picks]
    return [float(np.percentile(boot, 5)), float(np.percentile(boot, 95))]


def span_nll(kn, prompt: list[int], span: list[int]) -> float:
    """The 5-gram's NLL of a span given the prompt before it."""
    text = prompt + span
    return -sum(math.log(kn.prob(text[j], text[max(0, j - 4) : j])) for j in range(len(prompt), len(text)))


def summarise(task: str, method: str, items: list[dict], results: list[dict], kn) -> dict:
    rng = np.random.default_rng(0)
    nll = np.asarray([span_nll(kn, it["prompt"], r["tokens"]) for it, r in zip(items, results)])
    lengths = np.asarray([len(r["tokens"]) for r in results])
    met = np.asarray([r["met"] for r in results], dtype=float)
    both = np.stack([nll, lengths], 1)
    row = {
        "task": task,
        "method": method,
        "items": len(results),
        "success": float(met.mean()),
        "success_90": bootstrap(met, np.mean, rng),
        "fluency_ppl": math.exp(nll.sum() / lengths.sum()),
        "fluency_90": bootstrap(both, lambda b: math.exp(b[:, 0].sum() / b[:, 1].sum()), rng),
        "distinct_2": float(np.mean([distinct_n(r["tokens"], 2) for r in results])),
        "seconds": float(np.median([r["seconds"] for r in results])),
        "drafts": float(np.median([r["drafts"] for r in results])),
    }
    accepted = [r["accepted"] for r in results if r.get("accepted") is not None]
    if accepted:
        row["accepted"] = float(np.median(accepted))
    if task == "infill":
        right = np.asarray([r["right_nll"] for r in results])
        row |= {"right_nll": float(right.mean()), "right_nll_90": bootstrap(right, np.mean, rng)}
    return row


def run_task(task: str, items: list[dict], model, tok, kn, args) -> list[dict]:
    from tqdm import tqdm

    results: dict[str, list[dict]] = {m: [] for m in args.methods}
    for i, item in enumerate(tqdm(items, desc=task, unit="item", file=sys.stderr)):
        lang = run_item(task, item, "langevin", model, tok, args, args.seconds, i) if "langevin" in args.methods else None
        for method in args.methods:
            if method == "langevin":
                results[method].append(lang)
                continue
            seconds = lang["seconds"] if lang and method != "direct" else None
            results[method].append(run_item(task, item, method, model, tok, args, seconds, i))
    rows = [summarise(task, m, items, results[m], kn) for m in args.methods]
    if "original" in items[0]:  # the held-out text itself: what a human wrote under the same constraint
        held_out = [reference_result(task, item, model, tok, args) for item in items]
        rows.append(summarise(task, "held-out text", items, held_out, kn))
    return rows


def reference_result(task: str, item: dict, model, tok, args) -> dict:
    from ebm.composition import Problem, score

    out = {"tokens": item["original"], "seconds": 0.0, "drafts": 0}
    if task == "infill":
        total, right = joined_nll(model, item["prompt"], item["original"], item["right"])
        return out | {"right_nll": right, "met": True}
    cons = constraints_for(task, item, tok, model, args.weights)
    problem = Problem(model, tuple(item["prompt"]), len(item["original"]), tuple(cons))
    return out | {"met": bool(score(problem, torch.tensor([item["original"]])).met.all())}


def interval(row: dict, key: str, fmt: str) -> str:
    lo, hi = row[f"{key}_90"]
    return f"{row[key if key != 'fluency' else 'fluency_ppl']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def rounds_text(seconds: float | None) -> str:
    return "one round" if seconds is None else f"rounds until {seconds:g} s"


def moves_text(meta: dict) -> str:
    if not meta.get("move_share") or meta["seconds"] is None:
        return "no moves"
    kind = "plain" if meta.get("plain_moves") else "gradient-informed"
    return f"the last {meta['move_share']:.0%} of its time on {kind} Metropolis moves of {meta['move_chains']} drafts"


def report(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Checkpoint {meta['checkpoint']} (step {meta['step']}, {meta['epochs']:.2f} epochs seen, p_E perplexity "
        f"{meta['train_ppl']:.1f} on train and {meta['valid_ppl']:.1f} on valid windows); "
        f"{meta['items']} items per task; "
        f"p_E at temperature {meta['temperature']:g}, top-k {meta['top_k']} plus the constraints' tokens; Langevin "
        f"{meta['chains']} chains x {meta['steps']} steps, chain temperature {meta['chain_temperature']:g}, strength "
        f"{meta['strength']:g} (draw {meta['draw_strength']:g}, gradient draw {meta['gradient_draw']:g}, defensive "
        f"{meta['defensive']:g}), "
        f"{moves_text(meta)}, "
        f"{rounds_text(meta['seconds'])}; constraint weights {meta['weights'] or 'default'}; "
        "baselines get Langevin's seconds on each item. "
        "[90% bootstrap intervals over items]",
        "",
        "| task | method | success | fluency (KN-5 ppl) | right-context NLL | distinct-2 | s/item | drafts/item |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        right = interval(r, "right_nll", ".1f") if "right_nll" in r else "-"
        lines.append(
            f"| {r['task']} | {r['method']} | {interval(r, 'success', '.2f')} | {interval(r, 'fluency', '.1f')} | "
            f"{right} | {r['distinct_2']:.3f} | {r['seconds']:.2f} | {r['drafts']:.0f} |"
        )
    return "\n".join(lines)


def training_record(state: dict, model, tok) -> dict:
    """Epochs the checkpoint has seen, from its data position, and p_E's perplexity on 64 evenly
    spaced windows of the train and valid splits: the train/valid gap."""
    from ebm.scoring import token_logprobs
    from trainer.data import default_cache_dir, load_corpus, tokenize_split, windows_for

    corpus, cfg = load_corpus("builtin"), model.cfg
    ppl = {}
    for split in ("train", "valid"):
        windows = windows_for(np.asarray(tokenize_split(corpus, split, tok, default_cache_dir(), progress=False)), cfg)
        if split == "train":
            per_epoch = max(len(windows) // cfg.batch_size, 1)
        batch = torch.from_numpy(windows.batch(windows.evenly_spaced(64)))
        with torch.no_grad():
            ppl[split] = math.exp(-float(torch.cat([token_logprobs(model, b) for b in batch.split(16)]).mean()))
    epochs = state["data"]["epoch"] + state["data"]["batch_in_epoch"] / per_epoch
    return {"epochs": epochs, "train_ppl": ppl["train"], "valid_ppl": ppl["valid"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument(
        "--methods",
        nargs="+",
        default=["langevin", "direct", "rejection", "importance", "smc", "resample-move"],
        choices=list(COMPOSERS),
    )
    p.add_argument("--tokens", type=int, default=32)
    chain = ChainSettings()
    p.add_argument("--chains", type=int, default=chain.chains)
    p.add_argument("--steps", type=int, default=chain.steps)
    p.add_argument("--chain-temperature", type=float, default=chain.temperature)
    p.add_argument("--strength", type=float, default=chain.strength)
    p.add_argument("--draw-strength", type=float, default=chain.draw_strength)
    p.add_argument("--gradient-draw", type=float, default=chain.gradient_draw)
    p.add_argument("--defensive", type=float, default=chain.defensive, help="share of Langevin's drafts drawn untilted")
    p.add_argument(
        "--move-share", type=float, default=chain.move_share, help="share of Langevin's budget spent on Metropolis moves"
    )
    p.add_argument("--move-chains", type=int, default=chain.move_chains, help="drafts moved side by side")
    p.add_argument("--plain-moves", action="store_true", help="propose moves from q0 at a random position, not from the gradient")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--batch", type=int, default=16, help="drafts per batch of the baselines")
    p.add_argument(
        "--seconds", type=float, default=None, help="Langevin's budget per item: rounds until spent (default: one round)"
    )
    p.add_argument("--weight", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="/tmp/bench/constrained")
    args = p.parse_args()
    from commands.generate_command import parse_weights
    from trainer.data import load_corpus
    from trainer.loading import load_run

    torch.set_num_threads(args.threads)
    args.weights = parse_weights(args.weight)
    state, model, tok = load_run(Path(args.checkpoint))
    model.eval()
    kn, test = reference_scorer(args, tok)
    docs, rng = load_corpus("builtin").texts("test"), np.random.default_rng(0)
    build = {
        "keywords": lambda: keyword_items(docs, tok, args.items, rng),
        "infill": lambda: infill_items(test, args.items),
        "avoid": lambda: avoid_items(docs, tok, args.items, rng),
    }
    rows = []
    keys = (
        "checkpoint",
        "items",
        "temperature",
        "top_k",
        "chains",
        "steps",
        "chain_temperature",
        "strength",
        "draw_strength",
        "gradient_draw",
        "defensive",
        "move_share",
        "move_chains",
        "plain_moves",
        "seconds",
        "weights",
    )
    meta = {k: getattr(args, k) for k in keys} | {"step": state["step"]} | training_record(state, model, tok)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:  # each task's rows are written as soon as they exist
        rows += run_task(task, build[task](), model, tok, kn, args)
        table = report(rows, meta)
        (out / "constrained.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        (out / "constrained.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
