"""Perplexity at an equal training-time budget, reported the way the literature does.

Rows: the add-one unigram, interpolated modified Kneser-Ney n-grams, two transformers of the
EBM's width, depth, heads and window, each with its own learning-rate sweep and a row per dropout
(0, 0.1): this project's nanoGPT-style one (bench/transformer.py) and transformers'
GPT2LMHeadModel (bench/hf_gpt2.py), and the EBM (cpu preset, or --preset) with its own sweep.
Every neural model also gets a one-epoch row (each training token seen once), and every neural
row reports its epochs and its train / valid NLL, so a win is not one model memorising the split.
Every neural model gets the same minutes of optimiser steps (evaluation excluded) on the same
cores, one after another, in one invocation. All models use the run's
tokenizer: the preset's (cpu: a byte-level BPE of 8,192 tokens trained on the built-in corpus's
train split). Two texts are scored whole, every token once, with the same sliding window
(ebm-evaluate's protocol: context_global tokens, stride half of it, the first token after an
end-of-text token):

  in-domain   the built-in corpus's test split, which nothing trains or tunes on;
  zero-shot   WikiText-2 valid, detokenised; <unk> stays as literal text and is scored.

Token-level perplexity, word-level perplexity (total NLL / whitespace words of the original
text: the split's documents, the WikiText file as distributed) and bits per byte.

python bench/ppl.py --budget-min 10 --out /tmp/bench/ppl10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import peak_rss_mb  # noqa: E402

WIKITEXT = ROOT.parent / "shared" / "data" / "wikitext-2" / "wiki.valid.tokens"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


# ----------------------------------------------------------------------------- data


def scored_sets(args, tokenizer) -> dict[str, tuple[np.ndarray, dict]]:
    """name -> (token ids, words and bytes of the original text), exactly as ebm-evaluate scores them."""
    from trainer.loading import text_to_score

    sets = {"in-domain": text_to_score("builtin", "test", False, tokenizer, args.max_tokens)}
    if args.wikitext:
        sets["wikitext-2"] = text_to_score(args.wikitext, "all", True, tokenizer, args.max_tokens)
    return sets


def run_tokenizer(args):
    """The tokenizer ebm-train builds for the preset (cached: the same file the EBM run uses)."""
    from ebm.presets import PRESETS
    from trainer.data import default_cache_dir, load_corpus
    from trainer.tokenizer import load_tokenizer

    spec = PRESETS[args.preset].tokenizer
    return load_tokenizer(spec, load_corpus("builtin").texts("train"), default_cache_dir() / "tokenizers")


def scores(nll: float, tokens: int, units: dict) -> dict:
    return {
        "ppl": math.exp(nll / tokens),
        "word_ppl": math.exp(nll / units["words"]),
        "bits_per_byte": nll / math.log(2) / units["bytes"],
        "tokens": tokens,
        "words": units["words"],
    }


# ----------------------------------------------------------------------------- n-grams


def run_ngrams(args) -> dict:
    from bench.kneser_ney import KneserNey
    from trainer.data import default_cache_dir, load_corpus, tokenize_split

    tok = run_tokenizer(args)
    train = np.asarray(tokenize_split(load_corpus("builtin"), "train", tok, default_cache_dir(), progress=False))
    V = tok.vocab_size
    sets = scored_sets(args, tok)
    out = {"unigram": unigram_row(train, V, sets)}
    for order in args.kn_orders:
        t = time.perf_counter()
        model = KneserNey(order, V).fit(train.tolist())
        row = {
            "model": f"Kneser-Ney {order}-gram (interpolated, modified)",
            "fit_s": time.perf_counter() - t,
            "params": sum(len(c) for c in model.counts),
            "targets_seen": len(train),
        }
        for name, (tokens, units) in sets.items():
            ids = tokens.tolist()
            nll = -sum(math.log(model.prob(ids[j], ids[max(0, j - order + 1) : j])) for j in range(1, len(ids)))
            row[name] = scores(nll, len(ids) - 1, units)
        row["peak_rss_mb"] = peak_rss_mb()
        out[f"kn{order}"] = row
        del model
    return out


def unigram_row(train: np.ndarray, vocab_size: int, sets: dict) -> dict:
    """The add-one unigram of the train split, scored on each of scored_sets' texts."""
    from trainer.data import token_frequencies

    counts = token_frequencies(train, vocab_size) + 1.0
    unigram = np.log(counts / counts.sum())
    row = {"model": "add-one unigram", "params": vocab_size, "fit_s": 0.0, "targets_seen": len(train)}
    for name, (tokens, units) in sets.items():
        row[name] = scores(-unigram[tokens[1:]].sum(), len(tokens) - 1, units)
    return row


# ----------------------------------------------------------------------------- transformer


IMPLEMENTATIONS = {"nanogpt": "nanoGPT-style, this project's", "hf": "transformers GPT2LMHeadModel"}


def run_transformer(args, impl: str) -> dict:
    """One transformer implementation: its own learning-rate sweep (dropout 0), then the budget at
    the best rate once per --gpt-dropouts value and, with --single-epoch, one epoch at dropout 0.
    -> {result key: row}."""
    import dataclasses

    tok = run_tokenizer(args)
    gcfg, train_w, valid_w, batch, prior = gpt_setup(args.preset, tok, args.gpt_prior)
    C, sets = gcfg.block_size, scored_sets(args, tok)
    valid_ppl = validation_scorer(valid_w, C)
    sweep = {}
    if len(args.gpt_lrs) > 1:
        sweep = {
            lr: valid_ppl(train_gpt(gcfg, train_w, lr, 60 * args.sweep_min, batch, None, prior, impl=impl)[0])
            for lr in args.gpt_lrs
        }
    best = min(sweep, key=sweep.get) if sweep else args.gpt_lrs[0]
    budget, runs = 60 * args.budget_min, {}
    for dropout in args.gpt_dropouts:
        runs[transformer_key(impl, dropout)] = (dataclasses.replace(gcfg, dropout=dropout), budget, 0)
    if args.single_epoch:
        runs[transformer_key(impl, 0.0, epoch=True)] = (gcfg, math.inf, math.ceil(len(train_w) / batch))
    rows = {}
    for key, (cfg, seconds, max_steps) in runs.items():
        curve = None if max_steps else (seconds / 8, valid_ppl)
        model, steps, spent, points, train_nll = train_gpt(cfg, train_w, best, seconds, batch, curve, prior, max_steps, impl)
        row = transformer_row(cfg, model, steps, spent, batch, best, args.gpt_prior, impl) | {"curve": points}
        row["model"] += ", 1 epoch" if max_steps else ""
        row |= {
            "lr_sweep": {f"{k:g}": v for k, v in sweep.items()},
            "train_nll": train_nll,
            "valid_nll": math.log(valid_ppl(model)),
        }
        row["epochs"] = row["targets_seen"] / (len(train_w) * C)
        rows[key] = row | score_transformer(model, sets, C)
    return rows


def transformer_key(impl: str, dropout: float, epoch: bool = False) -> str:
    """Result key of a transformer row; "transformer" is the nanoGPT-style one without dropout."""
    if epoch:
        return f"transformer {impl}, 1 epoch"
    return "transformer" if (impl, dropout) == ("nanogpt", 0.0) else f"transformer {impl}, dropout {dropout:g}"


def validation_scorer(valid_w, C: int):
    """Perplexity of a model on 64 evenly spaced validation windows (the curve points)."""
    import torch

    ids = valid_w.evenly_spaced(64)

    def valid_ppl(model) -> float:
        model.eval()
        nll = sum(
            -model.target_logprobs(torch.from_numpy(valid_w.batch(ids[i : i + 16])), C).sum().item()
            for i in range(0, len(ids), 16)
        )
        model.train()
        return math.exp(nll / (len(ids) * C))

    return valid_ppl


def gpt_setup(preset: str, tok, gpt_prior: bool):
    """The transformer the same size as the preset's EBM: (GPTConfig, train and valid windows,
    batch size, output bias at the add-one unigram or None)."""
    import torch

    from bench.transformer import GPTConfig
    from ebm.presets import PRESETS
    from trainer.data import Windows, default_cache_dir, load_corpus, token_frequencies, tokenize_split

    cfg = PRESETS[preset].model_config(tok.vocab_size)
    corpus = load_corpus("builtin")
    train, valid = (np.asarray(tokenize_split(corpus, s, tok, default_cache_dir(), progress=False)) for s in ("train", "valid"))
    C = cfg.context_global
    gcfg = GPTConfig(
        vocab_size=tok.vocab_size, block_size=C, n_layer=cfg.context_layers, n_embd=cfg.latent_dim, n_head=cfg.context_heads
    )
    prior = None
    if gpt_prior:  # the EBM's head start: an output bias at the add-one unigram of the training split
        from ebm.model import unigram_log_prior

        prior = unigram_log_prior(torch.from_numpy(token_frequencies(train, tok.vocab_size)), tok.vocab_size)
    return gcfg, Windows(train, 0, C), Windows(valid, 0, C), cfg.batch_size, prior


def transformer_row(gcfg, model, steps: int, spent: float, batch: int, lr: float, gpt_prior: bool, impl: str = "nanogpt") -> dict:
    kind = ", unigram-initialised output bias" if gpt_prior else ""
    drop = f", dropout {gcfg.dropout:g}" if gcfg.dropout else ""
    row = {
        "model": f"transformer [{IMPLEMENTATIONS[impl]}] ({gcfg.n_layer} layers, d {gcfg.n_embd}, lr {lr:g}{drop}{kind})",
        "lr": lr,
        "steps": steps,
        "train_s": spent,
        "targets_seen": steps * batch * gcfg.block_size,
        "params": sum(p.numel() for p in model.parameters()),
    }
    return row | {"targets_per_s": row["targets_seen"] / spent}


def score_transformer(model, sets: dict, C: int) -> dict:
    """Each text of scored_sets by the EBM's protocol: sliding window of C, stride C / 2."""
    import torch

    from trainer.evaluation import sliding_sums

    model.eval()
    row = {}
    with torch.no_grad():
        for name, (tokens, units) in sets.items():

            def batch_fn(rows, new):
                return np.array([-model.target_logprobs(rows, new).double().sum().item(), new * rows.shape[0]])

            nll, n = sliding_sums(batch_fn, tokens, C, max(1, C // 2), 16)
            row[name] = scores(nll, int(n), units)
    return row | {"peak_rss_mb": peak_rss_mb()}


def train_gpt(
    gcfg, windows, lr: float, seconds: float, batch: int, curve_every, log_prior=None, max_steps: int = 0, impl: str = "nanogpt"
):
    """AdamW with nanoGPT's decay groups, warm-up then a cosine to a tenth over the time budget (or
    over max_steps steps), bf16 autocast where the CPU has it (as the EBM's heads); every position
    of each window is a target. -> (model, steps, s, curve, mean training NLL of the last tenth)"""
    import torch

    from bench.transformer import lr_at

    torch.manual_seed(0)
    model = make_gpt(impl, gcfg, log_prior)
    opt = gpt_optimizer(model, lr)
    rng = np.random.default_rng(0)
    spent, steps, curve, losses = 0.0, 0, [], []
    next_point = curve_every[0] if curve_every else math.inf
    while (steps < max_steps) if max_steps else (spent < seconds):
        t = time.perf_counter()
        done = steps / max_steps if max_steps else spent / seconds
        for group in opt.param_groups:
            group["lr"] = lr_at(int(1000 * done), 1000, lr, warmup=20)
        loss = gpt_step(model, opt, torch.from_numpy(windows.batch(rng.integers(len(windows), size=batch))))
        spent += time.perf_counter() - t
        steps += 1
        losses.append(loss.item())
        if spent >= next_point:
            curve.append({"train_s": spent, "ppl": curve_every[1](model)})
            next_point += curve_every[0]
    tail = losses[-max(len(losses) // 10, 1) :]  # as they trained, like the EBM's rows (read_run)
    return model, steps, spent, curve, sum(tail) / len(tail)


def gpt_optimizer(model, lr: float):
    """AdamW with nanoGPT's groups: weight decay on matrices only."""
    import torch

    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def gpt_step(model, opt, rows):
    """One transformer training step on (B, L + 1) windows, bf16 autocast where the CPU has it (as
    the EBM's heads), gradients clipped at 1; -> the loss."""
    import torch

    from ebm.ops import head_dtype
    from trainer.heap import release_free_heap

    dtype = head_dtype("auto", torch.device("cpu"))
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        loss = model.loss(rows)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    release_free_heap()  # as the EBM's trainer does
    return loss


def make_gpt(impl: str, gcfg, log_prior=None):
    from bench.transformer import GPT

    if impl == "hf":
        from bench.hf_gpt2 import HFGPT2

        return HFGPT2(gcfg, log_prior)
    return GPT(gcfg, log_prior)


# ----------------------------------------------------------------------------- EBM


def run_ebm(args, out: Path) -> dict:
    """ebm-train per learning rate (the sweep at --sweep-min, then the best at the budget, and with
    --single-epoch for one epoch), then ebm-evaluate on each scored text: exactly what a user runs.
    -> {result key: row}."""
    lrs = args.ebm_lrs if len(args.ebm_lrs) > 1 else []
    sweep = {lr: ebm_train(args, out, lr, minutes(args.sweep_min))["best_valid"] for lr in lrs}
    best = min(sweep, key=sweep.get) if sweep else args.ebm_lrs[0]
    budgets = {"ebm": minutes(args.budget_min)} | ({"ebm, 1 epoch": ["--epochs", "1"]} if args.single_epoch else {})
    rows = {}
    for key, budget in budgets.items():
        row = ebm_train(args, out, best, budget)
        row["lr_sweep"] = {f"{k:g}": v for k, v in sweep.items()}
        if key != "ebm":
            row["model"] += ", 1 epoch"
        rows[key] = row | score_ebm(args, row["ckpt"])
    return rows


def minutes(m: float) -> list[str]:
    """An ebm-train budget of m minutes of optimiser steps."""
    return ["--max-minutes", f"{m:g}"]


def scored_texts(args) -> list[tuple[str, str, str, bool]]:
    """(name, data, split, detokenize) of each text the EBM rows are scored on: the in-domain
    test split, and WikiText-2 valid zero-shot where args.wikitext is given."""
    texts = [("in-domain", "builtin", "test", False), ("wikitext-2", args.wikitext, "all", True)]
    return [t for t in texts if t[1]]


def score_ebm(args, checkpoint: str) -> dict:
    """ebm-evaluate's p_E and decoder scores of a checkpoint on each scored text."""
    row = {}
    for name, path, split, detok in scored_texts(args):
        cmd = [
            sys.executable,
            "-m",
            "commands",
            "evaluate",
            "--checkpoint",
            checkpoint,
            "--data",
            str(path),
            "--split",
            split,
            "--samples",
            "0",
            "--json",
            "--max-tokens",
            str(args.max_tokens),
        ]
        ev = json.loads(
            subprocess.run(cmd + ["--detokenize"] * detok, check=True, env=ENV, capture_output=True, text=True).stdout
        )
        units = {"words": ev["words"], "bytes": ev["bytes"]}
        row[name] = scores(ev["nll_energy"] * ev["tokens"], ev["tokens"], units)
        row[name + " decoder"] = scores(ev["nll_decoder"] * ev["tokens"], ev["tokens"], units)
    return row


def ebm_train(args, out: Path, lr: float, budget: list[str], run_id: str | None = None) -> dict:
    """One ebm-train run of the preset with args.ebm_set and `budget` (ebm-train's flags), read
    back from its log."""

    run_id = run_id or f"bench-lr{lr:g}-{'-'.join(budget).lstrip('-')}"
    cmd = [sys.executable, "-m", "commands", "train", "--out", str(out), "--run-id", run_id, "--quiet"]
    cmd += ["--preset", args.preset, *budget, "--set", f"learning_rate={lr}"]
    cmd += [a for kv in args.ebm_set for a in ("--set", kv)]
    subprocess.run(cmd, env=ENV, check=True)
    return read_run(args, out, run_id, lr)


def read_run(args, out: Path, run_id: str, lr: float) -> dict:
    """The row of a finished ebm-train run, from its log."""
    from runs.logs import LogReader
    from runs.runfiles import RunFiles

    files = RunFiles.under(out, run_id)
    reader = LogReader(files.log)
    reader.read_new()
    batches = {r["step"]: r for r in reader.of_type("batch")}
    last, meta = batches[max(batches)], reader.meta
    evals = [r for r in reader.of_type("eval") + reader.of_type("epoch") if r["step"] in batches]
    cfg = meta["config"]
    row = {
        "model": f"EBM ({args.preset} preset{', ' + ', '.join(args.ebm_set) if args.ebm_set else ''}, lr {lr:g})",
        "lr": lr,
        "steps": last["step"],
        "train_s": last["train_seconds"],
        "params": meta["n_params"],
        "targets_seen": last["step"] * cfg["batch_size"] * (cfg["seq_length"] or cfg["context_global"]),
        "best_valid": min(r["ppl_energy"] for r in evals),
        "ckpt": str(files.latest),
        "run_id": run_id,
        "curve": [
            {"train_s": batches[r["step"]]["train_seconds"], "ppl": r["ppl_energy"], "ppl_decoder": r["ppl_decoder"]}
            for r in evals
        ],
    }
    row["targets_per_s"] = row["targets_seen"] / row["train_s"]
    if meta.get("train_tokens"):
        row["epochs"] = row["targets_seen"] / meta["train_tokens"]
    tail = [batches[s]["nll"] for s in sorted(batches)[-max(len(batches) // 10, 1) :]]
    row["train_nll"] = sum(tail) / len(tail)  # the last tenth of the batches, as they trained
    row["valid_nll"] = evals[-1]["nll_energy"] if evals else None
    return row


# ----------------------------------------------------------------------------- report


def report(results: dict, args) -> str:
    sets = ["in-domain"] + (["wikitext-2"] if args.wikitext else [])
    swept = len(args.gpt_lrs) > 1 or len(args.ebm_lrs) > 1
    sweeps = f"learning-rate sweeps at {args.sweep_min:g} min each, not counted" if swept else "fixed learning rates"
    lines = [
        f"Budget {args.budget_min:g} min of optimiser steps per neural model ({sweeps}); "
        f"tokenizer {results.get('tokenizer')}; {os.cpu_count()} cores, "
        "one model at a time. Whole texts, every token once, sliding window of the EBM's context, stride half of it.",
        "",
        "| model | "
        + " | ".join(f"{s} ppl | {s} word ppl | {s} bits/byte" for s in sets)
        + " | targets seen | epochs | train / valid NLL | targets/s | params |",
        "|---|" + "---|" * (3 * len(sets) + 5),
    ]
    for r in results.values():
        if not isinstance(r, dict):
            continue
        for label, suffix in ((r["model"], ""), (r["model"] + ", decoder head", " decoder")):
            if f"{sets[0]}{suffix}" not in r:
                continue
            cells = [
                f"{r[s + suffix]['ppl']:.1f} | {r[s + suffix]['word_ppl']:.1f} | {r[s + suffix]['bits_per_byte']:.3f}"
                for s in sets
            ]
            rate = f"{r['targets_per_s']:.0f}" if "targets_per_s" in r else "-"
            epochs = f"{r['epochs']:.2f}" if "epochs" in r else "-"
            gap = f"{r['train_nll']:.3f} / {r['valid_nll']:.3f}" if r.get("valid_nll") is not None and not suffix else "-"
            seen = f"{r.get('targets_seen', 0):,}"
            lines.append(f"| {label} | {' | '.join(cells)} | {seen} | {epochs} | {gap} | {rate} | {r.get('params', 0):,} |")
    lines.append("")
    lines += ratios(results, sets[0])
    return "\n".join(lines) + "\n"


def ratios(results: dict, s: str) -> list[str]:
    out = []
    ebm, uni = results.get("ebm"), results.get("unigram")
    equal_budget = [r for k, r in results.items() if k.startswith("transformer") and "epoch" not in k]
    gpt = min(equal_budget, key=lambda r: r[s]["ppl"], default=None)  # the strongest at the same budget
    kn = min((r for k, r in results.items() if k.startswith("kn")), key=lambda r: r[s]["ppl"], default=None)
    if ebm and uni:
        out.append(f"- {s}: unigram / EBM ppl = {uni[s]['ppl'] / ebm[s]['ppl']:.2f}x (target >= 2 at 10 minutes)")
    if ebm and gpt:
        out.append(f"- strongest transformer at the same budget: {gpt['model']}")
        out.append(f"- {s}: EBM / that transformer ppl = {ebm[s]['ppl'] / gpt[s]['ppl']:.3f} (target <= 0.9 at 30 minutes)")
        out.append(f"- EBM / transformer targets/s = {ebm['targets_per_s'] / gpt['targets_per_s']:.3f} (target >= 1.0)")
    if ebm and kn:
        out.append(f"- {s}: EBM / best Kneser-Ney ppl = {ebm[s]['ppl'] / kn[s]['ppl']:.3f} (target < 1 at 30 minutes)")
    return out


def plot(results: dict, out: Path) -> None:
    """Validation perplexity (built-in valid split, a fixed sample) against training minutes."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in results.values():
        for head in ("ppl", "ppl_decoder"):
            points = [p for p in r.get("curve", []) if head in p] if isinstance(r, dict) else []
            if points:
                name = r["model"] + (", decoder head" if head == "ppl_decoder" else "")
                fig.add_trace(
                    go.Scatter(
                        x=[p["train_s"] / 60 for p in points], y=[p[head] for p in points], mode="lines+markers", name=name
                    )
                )
    fig.update_layout(
        title="Validation perplexity against training time",
        xaxis_title="minutes of training",
        yaxis_title="perplexity per token",
        yaxis_type="log",
        width=900,
        height=500,
    )
    fig.write_html(out / "ppl_curve.html", include_plotlyjs="cdn")
    try:
        fig.write_image(out / "ppl_curve.png")
    except Exception as err:  # kaleido needs a Chromium; the HTML is always written
        print(f"(no PNG: {err})", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-min", type=float, default=10.0, help="optimiser-step minutes per neural model")
    p.add_argument("--sweep-min", type=float, default=1.5, help="minutes per learning rate in each sweep")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--wikitext", default=str(WIKITEXT) if WIKITEXT.exists() else None, help="wiki.valid.tokens (zero-shot)")
    p.add_argument("--out", default="bench/results")
    p.add_argument("--models", nargs="+", default=["ngrams", "transformer", "ebm"], choices=["ngrams", "transformer", "ebm"])
    p.add_argument("--kn-orders", type=int, nargs="*", default=[3, 5])
    p.add_argument("--gpt-lrs", type=float, nargs="+", default=[3e-3, 1e-2], help="one value: no sweep")
    p.add_argument("--gpt-prior", action="store_true", help="start the transformer's output bias at the unigram")
    p.add_argument("--gpt-impls", nargs="+", default=list(IMPLEMENTATIONS), choices=list(IMPLEMENTATIONS))
    p.add_argument("--gpt-dropouts", type=float, nargs="+", default=[0.0, 0.1], help="one transformer row per value")
    p.add_argument("--no-single-epoch", dest="single_epoch", action="store_false", help="leave out the one-epoch rows")
    p.add_argument("--ebm-lrs", type=float, nargs="+", default=[3e-3, 1e-2], help="one value: no sweep")
    p.add_argument("--ebm-set", action="append", default=[], metavar="KEY=VALUE", help="EBMConfig override")
    p.add_argument("--max-tokens", type=int, default=0, help="score only this many tokens of each text (0: all)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.wikitext and not Path(args.wikitext).is_file():
        sys.exit(f"bench/ppl.py: error: {args.wikitext} not found; pass --wikitext PATH/wiki.valid.tokens")
    if not args.wikitext and not args.worker:
        print(f"[ppl] {WIKITEXT} not found: no zero-shot rows (pass --wikitext PATH/wiki.valid.tokens)", file=sys.stderr)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.worker:  # each baseline in a process of its own: its peak memory is its own
        found = run_ngrams(args) if args.worker == "ngrams" else run_transformer(args, args.worker.split("-", 1)[1])
        (out / f"{args.worker}.json").write_text(json.dumps(found, indent=2))
        return
    results = {"tokenizer": run_tokenizer(args).name}
    workers = {"ngrams": ["ngrams"], "transformer": [f"transformer-{impl}" for impl in args.gpt_impls], "ebm": []}
    for name in args.models:
        t = time.perf_counter()
        print(f"[ppl] {name} ...", file=sys.stderr, flush=True)
        if name == "ebm":
            results.update(run_ebm(args, out / "ebm"))
        for worker in workers[name]:
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--worker", worker], check=True, env=ENV)
            results.update(json.loads((out / f"{worker}.json").read_text()))
        print(f"[ppl] {name} done in {(time.perf_counter() - t) / 60:.1f} min", file=sys.stderr, flush=True)
    (out / "ppl.json").write_text(json.dumps(results, indent=2))
    text = report(results, args)
    (out / "ppl.md").write_text(text)
    plot(results, out)
    print(text)


if __name__ == "__main__":
    main()
