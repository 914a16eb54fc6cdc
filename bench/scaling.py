"""How training step time and peak memory grow with the number of splats, the vocabulary, the
batch size and knn_k, each varied alone from the default config; log-log fits give exponents.

python bench/scaling.py --out bench/results                     # about 15 minutes on 2 cores
python bench/scaling.py --splats 5000,20000 --vocab 50257 --batch 32 --knn 64 --steps 3

Each point runs in its own process so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import peak_rss_mb, training_step_times  # noqa: E402


def one_point(overrides: list[str], steps: int) -> dict:
    """Median step time (after one warm-up step) and peak RSS at one config."""
    import torch

    from ebm import EBMConfig, EBMModel, training_loss

    cfg = EBMConfig().with_overrides(overrides)
    torch.manual_seed(0)
    model = EBMModel(cfg)
    model.refresh_neighbours(force=True)
    times = training_step_times(model, steps, torch.Generator().manual_seed(0), training_loss)
    return {"step_s": statistics.median(times[1:]), "peak_rss_mb": peak_rss_mb()}


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--splats", default="5000,10000,50000,150000")
    p.add_argument("--vocab", default="5000,20000,50257")
    p.add_argument("--batch", default="8,16,32")
    p.add_argument("--knn", default="16,32,64")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", help="folder for scaling.md, scaling.json and scaling.png")
    p.add_argument("--point", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.point is not None:
        print(json.dumps(one_point(args.point, args.steps)))
        return
    axes = {
        "splats": ("n_splats_init", [int(x) for x in args.splats.split(",")]),
        "vocabulary": ("vocab_size", [int(x) for x in args.vocab.split(",")]),
        "batch": ("batch_size", [int(x) for x in args.batch.split(",")]),
        "knn_k": ("knn_k", [int(x) for x in args.knn.split(",")]),
    }
    results, lines = {}, []
    for axis, (field, values) in axes.items():
        rows = []
        for v in values:
            extra = [f"{field}={v}"] + (["knn_index=flat"] if field == "n_splats_init" else [])
            proc = subprocess.run(
                [sys.executable, __file__, "--steps", str(args.steps), "--point", *extra],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if proc.returncode != 0:
                rows.append({"value": v, "error": proc.stderr.strip().splitlines()[-1][:200]})
                print(f"{axis}={v}: failed: {rows[-1]['error']}", file=sys.stderr)
                continue
            rows.append({"value": v, **json.loads(proc.stdout.strip().splitlines()[-1])})
            print(f"{axis}={v}: {rows[-1]}", file=sys.stderr, flush=True)
        ok = [r for r in rows if "step_s" in r]
        time_exp = fit_exponent([r["value"] for r in ok], [r["step_s"] for r in ok]) if len(ok) > 1 else float("nan")
        mem_exp = fit_exponent([r["value"] for r in ok], [r["peak_rss_mb"] for r in ok]) if len(ok) > 1 else float("nan")
        results[axis] = {"field": field, "rows": rows, "time_exponent": time_exp, "memory_exponent": mem_exp}
        lines += [
            f"### {axis} ({field}); others at the default",
            "",
            "| value | step s | ratio to smallest | peak RSS MB |",
            "|---|---|---|---|",
        ]
        for r in rows:
            if "step_s" in r:
                lines.append(
                    f"| {r['value']} | {r['step_s']:.2f} | {r['step_s'] / ok[0]['step_s']:.2f} | {r['peak_rss_mb']:.0f} |"
                )
            else:
                lines.append(f"| {r['value']} | failed: {r['error']} | | |")
        lines += ["", f"fitted exponent: step time ∝ {axis}^{time_exp:.2f}, peak RSS ∝ {axis}^{mem_exp:.2f}", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scaling.md").write_text(text)
        (out / "scaling.json").write_text(json.dumps(results, indent=2))
        plot(results, out)


def plot(results: dict, out: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("step time (s)", "peak RSS (MB)"))
    for axis, r in results.items():
        ok = [row for row in r["rows"] if "step_s" in row]
        base = ok[0]["value"] if ok else 1
        xs = [row["value"] / base for row in ok]
        fig.add_trace(
            go.Scatter(x=xs, y=[row["step_s"] for row in ok], mode="lines+markers", name=f"{axis} (^{r['time_exponent']:.2f})"),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=xs, y=[row["peak_rss_mb"] for row in ok], mode="lines+markers", name=f"{axis} RSS (^{r['memory_exponent']:.2f})"
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(type="log", title="multiple of the smallest value")
    fig.update_yaxes(type="log")
    fig.update_layout(title="Scaling from the default config (one factor at a time)", width=1100, height=450)
    fig.write_html(out / "scaling.html", include_plotlyjs="cdn")
    try:
        fig.write_image(out / "scaling.png")
    except Exception as err:  # kaleido needs Chromium; the HTML is always written
        print(f"(no PNG: {err})", file=sys.stderr)


if __name__ == "__main__":
    main()
