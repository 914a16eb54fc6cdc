"""Perplexity at an equal training-time budget: this EBM (default config), a nanoGPT-style
transformer and an interpolated modified Kneser-Ney n-gram model, trained one after another
on the built-in corpus and scored on the same WikiText tokens with the same GPT-2 BPE.

python bench/ppl.py --budget-min 15 --valid ../shared/data/wikitext-2/wiki.valid.tokens \\
                    --test ../shared/data/wikitext-2/wiki.test.tokens --out bench/results

Protocol (printed with every table): training text = built-in corpus train split (Wikipedia
lead sections); tokenizer = GPT-2 BPE; budget = seconds spent in optimiser steps (evaluation
excluded); scored = the same evenly spaced windows of the detokenised WikiText file, each target
predicted from its 512 preceding tokens (the EBM's context_global), --eval-tokens targets.
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
from trainer.heap import release_free_heap  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "wikitext-2"


# ----------------------------------------------------------------------------- data


def load_data(args):
    """GPT-2 tokens of the built-in train/valid splits and the WikiText files, and the EBM's window shape."""
    from ebm import EBMConfig
    from trainer.data import default_cache_dir, load_corpus, tokenize_split
    from trainer.tokenizer import load_tokenizer
    from trainer.wikitext import detokenize

    # The protocol of the tables in docs/benchmarks.md: GPT-2 tokens, 512 tokens of history, the
    # last 32 of each window scored (the seed preset, before every position became a target).
    cfg = EBMConfig(seq_length=32)
    tok = load_tokenizer("gpt2")
    corpus = load_corpus("builtin")
    train = np.asarray(tokenize_split(corpus, "train", tok, default_cache_dir(), progress=False))
    valid = np.asarray(tokenize_split(corpus, "valid", tok, default_cache_dir(), progress=False))
    scored = {
        name: np.asarray(tok.encode(detokenize(Path(p).read_text(encoding="utf-8"))), dtype=np.int64)
        for name, p in (("valid", args.valid), ("test", args.test))
        if p
    }
    return cfg, train, valid, scored


# ----------------------------------------------------------------------------- workers


def run_kn(args) -> dict:
    from bench.kneser_ney import KneserNey
    from trainer.data import Windows

    cfg, train, _, scored = load_data(args)
    t = time.perf_counter()
    model = KneserNey(args.kn_order, cfg.vocab_size).fit(train.tolist())
    fit_s = time.perf_counter() - t
    result = {
        "model": f"Kneser-Ney {args.kn_order}-gram (interpolated, modified)",
        "fit_s": fit_s,
        "tokens_seen": int(len(train)),
        "params": sum(len(c) for c in model.counts),
    }
    for name, tokens in scored.items():
        w = Windows(tokens, cfg.context_global, cfg.seq_length)
        batch = w.batch(w.evenly_spaced(args.eval_tokens // cfg.seq_length))
        nll, n = 0.0, 0
        for row in batch:
            for j in range(len(row) - cfg.seq_length, len(row)):
                nll -= math.log(model.prob(int(row[j]), row[j - args.kn_order + 1 : j].tolist()))
                n += 1
        result[f"ppl_{name}"], result[f"tokens_{name}"] = math.exp(nll / n), n
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_transformer(args) -> dict:
    import torch

    from bench.transformer import GPT, GPTConfig, lr_at
    from trainer.data import Windows

    torch.manual_seed(0)
    cfg, train, valid, scored = load_data(args)
    T, H = cfg.seq_length, cfg.context_global
    train_w, valid_w = Windows(train, H, T), Windows(valid, H, T)
    curve_ids = valid_w.evenly_spaced(cfg.eval_tokens // T // 2)  # half the EBM's eval tokens: evaluation is not free
    gcfg = GPTConfig(
        vocab_size=cfg.vocab_size, block_size=H + T, n_layer=args.gpt_layers, n_embd=args.gpt_embd, n_head=args.gpt_embd // 64
    )

    def ppl_on(model, windows, ids) -> float:
        model.eval()
        nll = sum(
            -model.target_logprobs(torch.from_numpy(windows.batch(ids[i : i + 8])), T).sum().item() for i in range(0, len(ids), 8)
        )
        model.train()
        return math.exp(nll / (len(ids) * T))

    from ebm.ops import head_dtype

    # nanoGPT trains under bf16 autocast; do the same wherever the EBM's heads run in bf16
    dtype = head_dtype(args.gpt_dtype, torch.device("cpu"))

    def train_for(lr: float, seconds: float, curve_every: float | None):
        torch.manual_seed(0)
        model = GPT(gcfg)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
        rng = np.random.default_rng(0)
        spent, steps, curve, next_point = 0.0, 0, [], curve_every
        while spent < seconds:
            t = time.perf_counter()
            for group in opt.param_groups:  # warm-up then cosine over the time budget
                group["lr"] = lr_at(int(1000 * spent / seconds), 1000, lr, warmup=20)
            batch = torch.from_numpy(train_w.batch(rng.integers(len(train_w), size=args.gpt_batch)))
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                loss = model.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            release_free_heap()  # as the EBM's trainer does
            spent += time.perf_counter() - t
            steps += 1
            if curve_every and spent >= next_point:
                curve.append({"train_s": spent, "ppl": ppl_on(model, valid_w, curve_ids)})
                next_point += curve_every
        return model, steps, spent, curve

    sweep = {}
    for lr in args.gpt_lrs:
        model, *_ = train_for(lr, args.sweep_s, None)
        sweep[lr] = ppl_on(model, valid_w, curve_ids[:64])
    best = min(sweep, key=sweep.get)
    budget = 60 * args.budget_min
    model, steps, spent, curve = train_for(best, budget, budget / 10)
    seen = steps * args.gpt_batch * (H + T)
    result = {
        "model": f"causal transformer ({gcfg.n_layer} layers, d {gcfg.n_embd}, context {H + T}, lr {best:g}, "
        f"{str(dtype).removeprefix('torch.')} autocast)",
        "lr": best,
        "train_dtype": str(dtype).removeprefix("torch."),
        "lr_sweep": {str(k): v for k, v in sweep.items()},
        "steps": steps,
        "train_s": spent,
        "tokens_seen": seen,
        "tokens_per_s": seen / spent,
        "params": sum(p.numel() for p in model.parameters()),
        "non_embedding_params": model.non_embedding_params(),
        "curve": curve,
    }
    for name, tokens in scored.items():
        w = Windows(tokens, H, T)
        ids = w.evenly_spaced(args.eval_tokens // T)
        result[f"ppl_{name}"], result[f"tokens_{name}"] = ppl_on(model, w, ids), len(ids) * T
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_ebm(args, out: Path) -> dict:
    from trainer.logs import LogReader
    from trainer.runfiles import RunFiles

    run_id = f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "trainer.train",
        "--out",
        str(out),
        "--run-id",
        run_id,
        "--quiet",
        "--max-minutes",
        str(args.budget_min),
        "--preset",
        "seed",
        "--set",
        "seq_length=32",
        "--set",
        f"eval_interval={args.ebm_eval_interval}",
    ]
    cmd += [a for kv in args.ebm_set for a in ("--set", kv)]
    trainer = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(trainer.pid, 0)  # the rusage of this child alone
    if code := os.waitstatus_to_exitcode(status):
        raise subprocess.CalledProcessError(code, cmd)
    peak = usage.ru_maxrss / 1024  # includes this (small) process's peak at fork; the trainer's is far larger
    files = RunFiles.under(out, run_id)
    reader = LogReader(files.log)
    reader.read_new()
    batches = {r["step"]: r for r in reader.of_type("batch")}
    meta = reader.meta
    last = batches[max(batches)]
    ckpt = files.latest
    n_emb = meta["config"]["vocab_size"] * meta["config"]["latent_dim"]
    result = {
        "model": ("EBM (default config" if not args.ebm_set else f"EBM ({', '.join(args.ebm_set)}")
        + f", heads in {meta.get('head_dtype', 'float32')})",
        "steps": last["step"],
        "train_s": last["train_seconds"],
        "tokens_seen": last["step"] * meta["config"]["batch_size"] * meta["config"]["seq_length"],
        "params": meta["n_params"],
        "non_embedding_params": meta["n_params"] - n_emb,
        "peak_rss_mb": peak,
        "run_id": run_id,
        "curve": [
            {"train_s": batches[r["step"]]["train_seconds"], "ppl": r["ppl_energy"], "ppl_decoder": r["ppl_decoder"]}
            for r in reader.of_type("eval") + reader.of_type("epoch")
            if r["step"] in batches
        ],
    }
    result["tokens_per_s"] = result["tokens_seen"] / result["train_s"]
    for name, path in (("valid", args.valid), ("test", args.test)):
        if not path:
            continue
        ev = subprocess.run(
            [
                sys.executable,
                "-m",
                "trainer.evaluate",
                "--checkpoint",
                str(ckpt),
                "--data",
                path,
                "--split",
                "all",
                "--detokenize",
                "--max-tokens",
                str(args.eval_tokens),
                "--samples",
                "0",
                "--json",
            ],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
        scores = json.loads(ev.stdout)
        result[f"ppl_{name}"], result[f"ppl_decoder_{name}"] = scores["ppl_energy"], scores["ppl_decoder"]
        result[f"tokens_{name}"] = scores["tokens"]
    return result


# ----------------------------------------------------------------------------- report


def report(results: dict, args, out: Path) -> str:
    protocol = (
        f"Protocol: train on the built-in corpus (Wikipedia lead sections, train split) with GPT-2 BPE; "
        f"budget {args.budget_min:g} min of optimiser-step time per neural model (evaluation excluded); score "
        f"{args.eval_tokens} evenly spaced target tokens of detokenised WikiText-2 ({Path(args.valid).name}"
        f"{', ' + Path(args.test).name if args.test else ''}), each after its 512 preceding tokens; same windows for "
        f"every model. Machine: {os.cpu_count()} cores, one model at a time."
    )
    lines = [
        protocol,
        "",
        "| model | valid ppl | test ppl | tokens seen | train tokens/s | params | non-embedding | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def f(x, spec=".1f"):
        return "-" if x is None else format(x, spec)

    for r in results.values():
        valid = f(r.get("ppl_valid"))
        test = f(r.get("ppl_test"))
        if "ppl_decoder_valid" in r:
            valid += f" (decoder {f(r['ppl_decoder_valid'])})"
            test += f" (decoder {f(r.get('ppl_decoder_test'))})"
        lines.append(
            f"| {r['model']} | {valid} | {test} | {r['tokens_seen']:,} | {f(r.get('tokens_per_s'), '.0f')} | "
            f"{r.get('params', 0):,} | {r.get('non_embedding_params', 0):,} | {f(r.get('peak_rss_mb'), '.0f')} |"
        )
    text = "\n".join(lines) + "\n"
    if {"ebm", "transformer"} <= results.keys():
        ebm, gpt = results["ebm"], results["transformer"]
        text += (
            f"\nRatios: EBM ppl_energy / transformer ppl = {ebm['ppl_valid'] / gpt['ppl_valid']:.2f} (valid); "
            f"EBM tokens/s / transformer tokens/s = {ebm['tokens_per_s'] / gpt['tokens_per_s']:.3f}.\n"
        )
    if "kn" in results and "ebm" in results:
        text += f"EBM ppl_energy / Kneser-Ney ppl = {results['ebm']['ppl_valid'] / results['kn']['ppl_valid']:.2f} (valid).\n"
    plot(results, out)
    return text


def plot(results: dict, out: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for key, r in results.items():
        if r.get("curve"):
            fig.add_trace(
                go.Scatter(
                    x=[p["train_s"] / 60 for p in r["curve"]],
                    y=[p["ppl"] for p in r["curve"]],
                    mode="lines+markers",
                    name=r["model"] + (" (ppl_energy)" if key == "ebm" else ""),
                )
            )
            if key == "ebm":
                fig.add_trace(
                    go.Scatter(
                        x=[p["train_s"] / 60 for p in r["curve"]],
                        y=[p["ppl_decoder"] for p in r["curve"]],
                        mode="lines+markers",
                        name="EBM (ppl_decoder)",
                    )
                )
    fig.update_layout(
        title="Validation perplexity (built-in valid split) against training time",
        xaxis_title="minutes of training",
        yaxis_title="perplexity",
        yaxis_type="log",
        width=900,
        height=500,
    )
    fig.write_html(out / "ppl_curve.html", include_plotlyjs="cdn")
    try:
        fig.write_image(out / "ppl_curve.png")
    except Exception as err:  # kaleido needs a Chrome/Chromium; the HTML is always written
        print(f"(no PNG: {err})", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-min", type=float, default=15.0)
    p.add_argument("--valid", default=str(SHARED / "wiki.valid.tokens"))
    test = SHARED / "wiki.test.tokens"
    p.add_argument("--test", default=str(test) if test.exists() else None, help="optional test file")
    p.add_argument("--out", default="bench/results")
    p.add_argument("--models", nargs="+", default=["ebm", "transformer", "kn"], choices=["ebm", "transformer", "kn"])
    p.add_argument("--eval-tokens", type=int, default=16384)
    p.add_argument("--kn-order", type=int, default=3)
    p.add_argument("--gpt-layers", type=int, default=6)
    p.add_argument("--gpt-embd", type=int, default=512)
    p.add_argument("--gpt-batch", type=int, default=8)
    p.add_argument("--gpt-lrs", type=float, nargs="+", default=[1e-3, 3e-3, 6e-3, 1e-2])
    p.add_argument(
        "--gpt-dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="autocast dtype of the transformer's training (auto: as the EBM's head_dtype); scoring is float32",
    )
    p.add_argument("--sweep-s", type=float, default=60.0, help="training seconds per learning rate in the sweep")
    p.add_argument("--ebm-eval-interval", type=int, default=50)
    p.add_argument("--ebm-set", action="append", default=[], metavar="KEY=VALUE", help="EBMConfig override (default: none)")
    p.add_argument("--worker", choices=["transformer", "kn"], help=argparse.SUPPRESS)
    args = p.parse_args()
    for path in (args.valid, args.test):
        if path and not Path(path).is_file():
            sys.exit(f"bench/ppl.py: error: {path} not found; pass --valid/--test (WikiText-2 wiki.*.tokens files)")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        fn = run_transformer if args.worker == "transformer" else run_kn
        (out / f"{args.worker}.json").write_text(json.dumps(fn(args), indent=2))
        return
    results = {}
    for name in args.models:  # one after another on the same cores
        t = time.perf_counter()
        print(f"[ppl] {name} ...", file=sys.stderr, flush=True)
        if name == "ebm":
            results[name] = run_ebm(args, out / "ebm")
        else:
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--worker", name], check=True)
            results[name] = json.loads((out / f"{name}.json").read_text())
        print(f"[ppl] {name} done in {(time.perf_counter() - t) / 60:.1f} min", file=sys.stderr, flush=True)
    (out / "ppl.json").write_text(json.dumps(results, indent=2))
    text = report(results, args, out)
    (out / "ppl.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
