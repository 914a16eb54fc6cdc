"""A checkpoint's diagnosis: splat statistics, loss trends and recommendations, as a report
(markdown, histograms, JSON). ebm-diagnose (commands.diagnose_command) and the dashboard's
Diagnose page both read it from here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from runs.checkpoint import CheckpointError, load_checkpoint
from runs.logs import LogReader
from runs.runfiles import log_path, run_id_problem

from .alerts import Trend, describe_trend, trend


def splat_arrays(state: dict) -> dict[str, np.ndarray]:
    """Per-splat kappa, alpha, usage and age from a checkpoint, without building the model."""
    from ebm.config import EBMConfig
    from ebm.splats import SplatStore

    cfg = EBMConfig.from_saved(state["config"])
    sd = {k.removeprefix("splats."): v for k, v in state["model"].items() if k.startswith("splats.")}
    store = SplatStore(cfg, sd["mu_raw"].shape[0])
    store.load_state_dict(sd)
    with torch.no_grad():
        return {
            "kappa": store.kappa.numpy(),
            "alpha": store.log_alpha.exp().numpy(),
            "usage": store.usage.numpy(),
            "age": (state["step"] - store.birth_step).numpy().astype(float),
            "phase": store.birth_phase.numpy(),
        }


def recommendations(
    arrays: dict[str, np.ndarray], cfg: dict, coverage: float | None, soc_rate: float | None, verdict: str
) -> list[str]:
    recs = []
    kappa, usage = arrays["kappa"], arrays["usage"]
    at_max = float((kappa > 0.98 * cfg["max_kappa"]).mean())
    at_min = float((kappa < 1.02 * cfg["min_kappa"]).mean())
    if at_max > 0.2:
        recs.append(f"kappa saturates at max_kappa for {at_max:.0%} of splats: raise max_kappa or lower splat_temperature")
    if at_min > 0.5:
        recs.append(
            f"kappa sits at min_kappa for {at_min:.0%} of splats: the splat term is nearly flat; lower min_kappa "
            "or raise splat_temperature's phase values"
        )
    unused = float((usage < 1e-4).mean())
    if unused > 0.3:
        recs.append(
            f"{unused:.0%} of splats are never among a target's neighbours: lower soc_prune_alpha to prune them, "
            "or spawn from data (lower soc_threshold)"
        )
    if coverage is not None and coverage < 0.8:
        recs.append(f"coverage {coverage:.1%} is below the 80% target: more splats (capacity) or lower coverage_kernel")
    if soc_rate is not None and soc_rate > 0.5:
        recs.append(f"SOC rate {soc_rate:.2f} avalanches per check: raise soc_threshold or capacity")
    if verdict == "rising":
        recs.append("the training loss is rising: lower learning_rate or grad_clip")
    if verdict == "flat":
        recs.append("the training loss is flat: raise learning_rate, model width (hidden_dim) or the splat capacity")
    return recs or ["no problems found"]


def histogram_text(values: np.ndarray, bins: int = 10, width: int = 40) -> str:
    counts, edges = np.histogram(values, bins=bins)
    top = max(1, counts.max())
    digits = edge_digits(edges)
    return "\n".join(
        f"{edges[i]:>12.{digits}g} .. {edges[i + 1]:<12.{digits}g} {'#' * int(width * c / top)} {c}" for i, c in enumerate(counts)
    )


def edge_digits(edges: np.ndarray) -> int:
    """Significant digits that tell neighbouring bin edges apart (4 at least): a store whose kappa
    spans 2.00008 to 2.00012 must not print every bin as "2 .. 2"."""
    step = float(np.min(np.diff(edges))) if len(edges) > 1 else 0.0
    scale = float(np.max(np.abs(edges))) if len(edges) else 0.0
    if step <= 0 or scale <= 0:
        return 4
    return max(4, min(12, int(np.ceil(np.log10(scale / step))) + 2))


def diagnose(checkpoint: Path, log_dir: Path | None = None) -> dict:
    state = load_checkpoint(checkpoint)
    try:
        return _diagnose(checkpoint, state, log_dir)
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as err:  # ConfigError is a ValueError
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(f"{checkpoint}: its tensors or config cannot be read as a model's ({first})") from None


def _diagnose(checkpoint: Path, state: dict, log_dir: Path | None) -> dict:
    arrays = splat_arrays(state)
    records: list[dict] = []
    run_id = state.get("run_id")
    if run_id is not None and run_id_problem(str(run_id)):
        run_id = None  # never a path to read: a run id that is not a plain name has no log
    if log_dir is not None and run_id:
        reader = LogReader(log_path(log_dir, run_id))
        reader.read_new()
        records = reader.records
    batches = [r for r in records if r["type"] == "batch" and r["step"] <= state["step"]]
    evals = [r for r in records if r["type"] in ("eval", "epoch") and r["step"] <= state["step"]]
    socs = [r for r in records if r["type"] == "soc" and r["step"] <= state["step"]]
    energy_trend = describe_trend([r.get("energy") for r in batches])
    nll_trend = describe_trend([r.get("nll") for r in batches])
    coverage = evals[-1].get("coverage") if evals else None
    soc_rate = socs[-1].get("soc_rate") if socs else None
    soc_trend = trend([float(r.get("avalanche", False)) for r in socs])[0] if len(socs) >= 3 else None
    stats = {
        name: {
            "mean": float(v.mean()),
            "p10": float(np.quantile(v, 0.1)),
            "p50": float(np.median(v)),
            "p90": float(np.quantile(v, 0.9)),
        }
        for name, v in arrays.items()
        if name != "phase"
    }
    return {
        "checkpoint": str(checkpoint),
        "run_id": run_id,
        "step": state["step"],
        "epoch": state["epoch"],
        "n_splats": int(len(arrays["kappa"])),
        "stats": stats,
        "energy_trend": energy_trend,
        "nll_trend": nll_trend,
        "coverage": coverage,
        "soc_rate": soc_rate,
        "soc_trend": soc_trend,
        "last_eval": evals[-1] if evals else None,
        "alerts": [r for r in records if r["type"] == "alert"],
        "recommendations": recommendations(arrays, state["config"], coverage, soc_rate, nll_trend.word),
        "arrays": arrays,
    }


def render_markdown(report: dict) -> str:
    lines = [
        f"# Diagnosis of {report['run_id']} at step {report['step']} (epoch {report['epoch']})",
        "",
        f"- splats: {report['n_splats']}",
        f"- energy trend: {report['energy_trend'].markdown()}",
        f"- training nll trend: {report['nll_trend'].markdown()}",
    ]
    if report["coverage"] is not None:
        lines.append(f"- coverage of validation targets: {report['coverage']:.1%}")
    if report["soc_rate"] is not None:
        lines.append(f"- SOC rate: {report['soc_rate']:.2f} avalanches per check")
    if report["last_eval"]:
        ev = report["last_eval"]
        lines.append(
            f"- last eval: ppl_energy {ev.get('ppl_energy', float('nan')):.2f}, "
            f"ppl_decoder {ev.get('ppl_decoder', float('nan')):.2f} on {ev.get('tokens')} tokens"
        )
    lines += ["", "## Splat statistics", "", "| | mean | p10 | p50 | p90 |", "|---|---|---|---|---|"]
    for name, s in report["stats"].items():
        lines.append(f"| {name} | {s['mean']:.4g} | {s['p10']:.4g} | {s['p50']:.4g} | {s['p90']:.4g} |")
    lines += ["", "## Recommendations", ""] + [f"- {r}" for r in report["recommendations"]]
    if report["alerts"]:
        lines += ["", "## Alerts", ""] + [
            f"- step {a['step']}: {a.get('rule')}: {a.get('message')}" for a in report["alerts"][-20:]
        ]
    return "\n".join(lines) + "\n"


HISTOGRAMS = ("kappa", "alpha", "usage", "age")


def histogram_figures(report: dict) -> dict:
    """Plotly histograms of the splat statistics; the report files and the dashboard both use these."""
    import plotly.express as px

    return {
        name: px.histogram(x=report["arrays"][name], nbins=50, title=f"splat {name}", labels={"x": name}) for name in HISTOGRAMS
    }


def write_report(report: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pngs = True
    for name, fig in histogram_figures(report).items():
        fig.write_html(folder / f"hist_{name}.html", include_plotlyjs="cdn")
        if pngs:
            try:
                fig.write_image(folder / f"hist_{name}.png", width=700, height=400)
            except Exception:  # kaleido needs Chromium; the HTML plots are always written
                pngs = False
    links = "".join((f"![{n}](hist_{n}.png)\n" if pngs else "") + f"[{n}, interactive](hist_{n}.html)\n\n" for n in HISTOGRAMS)
    md = render_markdown(report) + "\n## Plots\n\n" + links
    path = folder / "report.md"
    path.write_text(md)
    plain = {k: (vars(v) if isinstance(v, Trend) else v) for k, v in report.items() if k != "arrays"}
    (folder / "report.json").write_text(json.dumps(plain, default=float, indent=2))
    return path
