"""ebm-diagnose: a checkpoint's diagnosis (trainer.diagnosis) printed, or written as a report, or
a table over every checkpoint of a run."""

from __future__ import annotations

import sys
from pathlib import Path

from runs.runfiles import CheckpointError, list_checkpoints
from trainer.diagnosis import diagnose, histogram_text, render_markdown, write_report
from trainer.tokenizer import TokenizerError

from .specs import DiagnoseSpec


def run(args: DiagnoseSpec) -> int:
    out = args.out
    try:
        if args.batch:
            return _batch(out, args.run_id)
        if not args.checkpoint:
            print("ebm-diagnose: error: give --checkpoint PATH or --batch", file=sys.stderr)
            return 2
        ckpt = args.checkpoint
        report = diagnose(ckpt, out / "logs")
        print(render_markdown(report))
        for name in ("kappa", "alpha"):
            print(f"{name} histogram\n{histogram_text(report['arrays'][name])}\n")
        if args.report is not None:
            folder = Path(args.report) if args.report else (ckpt if ckpt.is_dir() else ckpt.parent) / "report"
            print(f"report written to {write_report(report, folder)}")
    except (CheckpointError, TokenizerError, OSError) as err:
        print(f"ebm-diagnose: error: {err}", file=sys.stderr)
        return 2
    return 0


def _batch(out: Path, run_id: str | None) -> int:
    root = out / "checkpoints"
    if run_id is None:
        runs = sorted((p for p in root.glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise CheckpointError(f"no runs under {root}")
        run_id = runs[-1].name
    paths = [p for _, p in list_checkpoints(root / run_id)] + [root / run_id / "latest.pt"]
    print(
        "| checkpoint | step | splats | kappa p50 | alpha p50 | coverage | ppl_energy | nll trend |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for path in paths:
        if not path.exists():
            continue
        try:
            r = diagnose(path, out / "logs")
        except CheckpointError as err:
            print(f"| {path.name} | unreadable: {err} | | | | | | |")
            continue
        ev = r["last_eval"] or {}
        cov = f"{r['coverage']:.3f}" if r["coverage"] is not None else "-"
        print(
            f"| {path.name} | {r['step']} | {r['n_splats']} | {r['stats']['kappa']['p50']:.3g} "
            f"| {r['stats']['alpha']['p50']:.3g} "
            f"| {cov} | {ev.get('ppl_energy', float('nan')):.2f} | {r['nll_trend'].word} |"
        )
    return 0
