"""Training curves: which metrics, smoothing without start-up bias, and Plotly figures.

Smoothing never drags early values towards zero: the exponential average is debiased (pandas'
`adjust=True` weights, the same as dividing a zero-started EMA by 1 - beta^t) and the moving
average is trailing with a shrinking window at the start. Raw points stay visible. A series
longer than `max_points` is drawn per bucket of consecutive points: the line through each
bucket's last value and a band from its minimum to its maximum, so a one-step spike in a million
points still shows (a stride would drop it); the smoothing uses every point. Step-like series
(learning rate, splat count) are drawn as steps and never smoothed; sparse events as markers.
Log axes are labelled at 1, 2 and 5 of each decade only, never at every minor tick.
Curves are SVG, not WebGL: a browser keeps about 16 WebGL contexts, and nine panels of several
runs lost the oldest ones (blank charts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from trainer.alerts import describe_trend


@dataclass(frozen=True)
class Panel:
    title: str
    source: tuple[str, ...]  # log event types the metrics come from
    metrics: tuple[str, ...]
    help: str  # one line: what the numbers are, in which units, and which way is good
    log_y: bool = False
    smoothed: bool = True  # sparse series (evaluations, SOC checks) are drawn as they are
    shape: str = "line"  # "steps": held until the next value (lr, counts); "events": markers only


PANELS = (
    Panel(
        "Loss components",
        ("batch",),
        ("nll", "dsm", "dec", "balance", "mem_nll"),
        "nats per target: nll of p_E, dsm = score-matching error (1 = predicting zero scores), dec = decoder nll, "
        "balance = expert load (1 = even), mem_nll = nll of p_E mixed with the in-batch memory (lambda_mem > 0); "
        "all should fall",
    ),
    Panel(
        "Energy at targets",
        ("batch",),
        ("energy", "energy_splat", "energy_geo", "energy_comp"),
        "E(e_w; c) of the true next token and its three terms, in units of T; lower means the model expects it",
    ),
    Panel(
        "Validation perplexity",
        ("eval", "epoch"),
        ("ppl_energy", "ppl_decoder"),
        "exp(mean nll) on held-out text, per token of the run's tokenizer; ppl_energy is exact over the vocabulary",
        log_y=True,
        smoothed=False,
    ),
    Panel(
        "Training perplexity",
        ("batch",),
        ("ppl",),
        "exp(nll) of each training batch (per token); below validation perplexity when the model fits the training split",
        log_y=True,
    ),
    Panel(
        "Splat share at the targets",
        ("eval", "epoch"),
        ("splat_share", "splat_coverage"),
        "share of each validation target's probability that the splats give (mean), and the share of targets "
        "where it is at least 0.1: what the splats do that the base softmax does not (0 with the splats off)",
        smoothed=False,
    ),
    Panel(
        "Splat distributions (median, band p10 to p90)",
        ("eval", "epoch"),
        ("kappa_p50", "alpha_p50", "usage_p50"),
        "over all splats at each evaluation: concentration kappa, weight alpha and usage; a band that collapses "
        "means the splats became alike, one at max_kappa means they saturate",
        log_y=True,
        smoothed=False,
    ),
    Panel("SOC rate", ("soc",), ("soc_rate",), "avalanches per SOC check over the last 20 checks (0 to 1)", smoothed=False),
    Panel(
        "Avalanche size (merged + pruned + spawned)",
        ("soc",),
        ("avalanche_size",),
        "splats edited by each SOC avalanche; large and frequent means the landscape explains the data poorly",
        smoothed=False,
        shape="events",
    ),
    Panel("Splats", ("batch",), ("n_splats",), "number of vMF splats in the store", smoothed=False, shape="steps"),
    Panel("Tokens / s", ("batch",), ("tokens_per_s",), "training targets per second of optimiser steps"),
    Panel(
        "Learning rate",
        ("batch",),
        ("lr",),
        "AdamW learning rate (warm-up, then cosine decay)",
        log_y=True,
        smoothed=False,
        shape="steps",
    ),
    Panel("Gradient norm", ("batch",), ("grad_norm",), "global gradient norm before clipping (grad_clip)", log_y=True),
    Panel(
        "Memory (MiB)",
        ("batch",),
        ("rss_peak_mb", "rss_mb", "gpu_peak_mb"),
        "the trainer's peak resident memory since the previous batch record, its resident memory when the record "
        "was written (after the step freed its activations), and on CUDA the peak GPU memory allocated; "
        "a steady climb is a leak",
    ),
    Panel(
        "CPU cores busy",
        ("batch",),
        ("cpu_cores",),
        "CPU seconds per wall second of the trainer since its previous batch record (2 = two cores kept busy)",
    ),
)
X_AXES = {"step": "step", "wall time": "time", "hours since start": "hours"}
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def smooth(values: pd.Series, method: str, strength: float) -> pd.Series:
    """method "ema": debiased EMA with beta = strength in [0, 1); "mean": trailing moving average
    over int(strength) points; "none": unchanged. NaNs are skipped, not propagated."""
    if method == "none" or len(values) == 0:
        return values
    if method == "ema":
        if not 0 <= strength < 1:
            raise ValueError("EMA strength must be in [0, 1)")
        return values.ewm(alpha=1 - strength, adjust=True, ignore_na=True).mean()
    if method == "mean":
        return values.rolling(max(1, int(strength)), min_periods=1).mean()
    raise ValueError(f"unknown smoothing {method!r}")


def convert_x(value: float, old: str, new: str, steps: np.ndarray, hours: np.ndarray) -> float | None:
    """The same moment of training on another x axis (X_AXES values), interpolated along a run's
    (step, hours since start) pairs; None where there is no number to give (a wall-clock axis,
    or no pairs yet)."""
    if old == new:
        return value
    if "time" in (old, new) or len(steps) == 0:
        return None
    src, dst = (steps, hours) if old == "step" else (hours, steps)
    return float(np.interp(value, src, dst))


def bucket_size(n: int, max_points: int) -> int:
    return max(1, -(-n // max_points))


def envelope(
    xs: pd.Series, ys: pd.Series, line: pd.Series, size: int, spread: tuple[pd.Series, pd.Series] | None = None
) -> pd.DataFrame:
    """Per bucket of `size` consecutive points: x and line value of its last point, and the min
    and max of the raw ys, or of a run group's per-step (lo, hi) spread (NaNs skipped) ->
    columns x, line, lo, hi."""
    lo, hi = (ys, ys) if spread is None else spread
    frame = pd.DataFrame({"x": xs.to_numpy(), "line": line.to_numpy(), "lo": lo.to_numpy(), "hi": hi.to_numpy()})
    grouped = frame.assign(b=np.arange(len(ys)) // size).groupby("b", sort=True)
    return pd.DataFrame(
        {"x": grouped["x"].last(), "line": grouped["line"].last(), "lo": grouped["lo"].min(), "hi": grouped["hi"].max()}
    ).reset_index(drop=True)


def run_groups(configs: dict[str, dict], field: str = "seed") -> list[list[str]]:
    """Runs whose configs are equal but for `field`, in first-seen order; a run alone is a group of one."""
    groups: dict[str, list[str]] = {}
    for run, cfg in configs.items():
        groups.setdefault(repr(sorted((k, str(v)) for k, v in cfg.items() if k != field)), []).append(run)
    return list(groups.values())


def group_series(members: list[RunSeries]) -> RunSeries:
    """Several runs as one: each metric's mean over the runs at each step, with `<metric>__lo` and
    `<metric>__hi` the min and max over them; time as the mean time since each run's start."""
    if len(members) == 1:
        return members[0]
    frames = {}
    for source in members[0].frames:
        parts = [rs.frames.get(source, pd.DataFrame()).assign(t=lambda f, rs=rs: f["t"] - (rs.start_t or 0)) for rs in members]
        parts = [p for p in parts if not p.empty and "step" in p]
        if not parts:
            frames[source] = pd.DataFrame()
            continue
        numeric = pd.concat(parts, ignore_index=True).select_dtypes("number").groupby("step")
        mean = numeric.mean()
        mean = mean[[c for c in mean.columns if not c.endswith(("__lo", "__hi"))]]  # a run's own bands give way
        metrics = [c for c in mean.columns if c != "t"]
        spread = {f"{c}__lo": numeric[c].min() for c in metrics} | {f"{c}__hi": numeric[c].max() for c in metrics}
        frames[source] = pd.concat([mean, pd.DataFrame(spread)], axis=1).reset_index()
    name = f"{members[0].run} +{len(members) - 1} (mean, band: min to max)"
    return RunSeries(name, frames, 0.0, members[0].phases.iloc[0:0], members[0].alerts.iloc[0:0])


def log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2 and 5 times each power of ten from lo to hi (lo > 0), one decade either side."""
    ticks = []
    for e in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 2):
        ticks += [m * 10.0**e for m in (1, 2, 5)]
    inside = [t for t in ticks if lo / 10 <= t <= hi * 10]
    return inside if len(inside) <= 12 else [t for t in inside if np.isclose(t / 10 ** np.floor(np.log10(t)), 1)]


def tick_text(value: float) -> str:
    return f"{value:g}" if 1e-3 <= value < 1e6 else f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


def with_x(frame: pd.DataFrame, x: str, start_t: float | None) -> pd.Series:
    if x == "step":
        return frame["step"]
    if x == "time":
        return pd.to_datetime(frame["t"], unit="s")
    return (frame["t"] - (start_t if start_t is not None else frame["t"].min())) / 3600.0


def add_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns computed from logged ones: avalanche size from SOC events, and each splat
    statistic's median with its p10-p90 band from evaluations (as `<name>_p50__lo/__hi`)."""
    if {"merged", "pruned", "spawned"} <= set(frame.columns):
        frame = frame.assign(avalanche_size=frame["merged"] + frame["pruned"] + frame["spawned"])
    for name in ("kappa", "alpha", "usage"):
        if {f"{name}_p10", f"{name}_p90"} <= set(frame.columns):
            frame = frame.assign(**{f"{name}_p50__lo": frame[f"{name}_p10"], f"{name}_p50__hi": frame[f"{name}_p90"]})
    return frame


def energy_trend(energy: pd.Series, window: int = 200) -> str:
    # Energies cross zero, so the slope is given in energy units, not as a share of the mean.
    return f"trend: {describe_trend(energy.dropna().tolist(), window)}"


def panel_data(panel: Panel, runs: list[RunSeries]) -> pd.DataFrame:
    """The raw points of a panel in long form (run, step, t, metric, value), for download."""
    parts = []
    for rs in runs:
        frame = rs.frames.get("+".join(panel.source), pd.DataFrame())
        for metric in (m for m in panel.metrics if m in frame):
            part = frame[["step", "t", metric]].dropna(subset=[metric]).rename(columns={metric: "value"})
            parts.append(part.assign(run=rs.run, metric=metric)[["run", "step", "t", "metric", "value"]])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["run", "step", "t", "metric", "value"])


def is_flat(panel: Panel, runs: list[RunSeries]) -> bool:
    """True when the panel has nothing to show: no points, or every metric of every run constant."""
    data = panel_data(panel, runs)
    if data.empty:
        return True
    spread = data.groupby(["run", "metric"])["value"].agg(lambda v: v.max() - v.min())
    return bool((spread <= 1e-9 * data["value"].abs().max()).all())


def config_differences(configs: dict[str, dict]) -> pd.DataFrame:
    """The config fields whose values differ between runs: one row per field, one column per run."""
    keys = sorted({k for cfg in configs.values() for k in cfg})
    rows = {k: {run: str(cfg[k]) if k in cfg else "(not set)" for run, cfg in configs.items()} for k in keys}
    differing = {k: v for k, v in rows.items() if len(set(v.values())) > 1}
    return pd.DataFrame.from_dict(differing, orient="index", columns=list(configs))


@dataclass
class RunSeries:
    """What one run contributes to the panels: its frames, first timestamp, phases and alerts."""

    run: str
    frames: dict[str, pd.DataFrame]  # panel source key -> frame
    start_t: float | None
    phases: pd.DataFrame
    alerts: pd.DataFrame


def panel_figure(
    panel: Panel,
    runs: list[RunSeries],
    x: str = "step",
    method: str = "ema",
    strength: float = 0.9,
    max_points: int = 2000,
    show_raw: bool = True,
    log_y: bool | None = None,
    x_range: tuple[float | None, float | None] = (None, None),
) -> tuple[go.Figure, str]:
    """The figure of one panel over several runs, and a caption saying what was thinned;
    log_y overrides the panel's own choice of axis."""
    fig = go.Figure()
    method = method if panel.smoothed else "none"
    notes = []
    y_top = None
    for r_i, rs in enumerate(runs):
        frame = rs.frames.get("+".join(panel.source), pd.DataFrame())
        for m_i, metric in enumerate(panel.metrics):
            spread_cols = [c for c in (f"{metric}__lo", f"{metric}__hi") if c in frame]
            data = frame[["step", "t", metric, *spread_cols]].dropna(subset=[metric]) if metric in frame else pd.DataFrame()
            if data.empty:
                continue
            size = bucket_size(len(data), max_points)
            if size > 1:
                notes.append(f"{rs.run}/{metric}: {len(data):,} points in buckets of {size} (line: last, band: min to max)")
            style = _trace_style(panel, len(runs), r_i, m_i, rs.run, metric)
            xs, ys = with_x(data, x, rs.start_t), data[metric].astype(float)
            spread = (data[spread_cols[0]], data[spread_cols[1]]) if len(spread_cols) == 2 else None
            env = envelope(xs, ys, smooth(ys, method, strength), size, spread)
            raw = show_raw and method != "none" and size == 1 and spread is None
            band = size > 1 or spread is not None
            fig.add_traces(_metric_traces(env, ys, raw, band, panel.shape, dense=len(data) >= 30, **style))
            top = float(np.nanmax(ys.to_numpy()))
            y_top = top if y_top is None else max(y_top, top)
        _add_markers(fig, rs, x, y_top)
    _lay_out(fig, panel, x, panel.log_y if log_y is None else log_y)
    lo, hi = x_range  # the app's own zoom: shared by every panel and kept across refreshes
    if (lo is not None or hi is not None) and fig.data:
        xs = np.concatenate([np.asarray(t.x, dtype=float) for t in fig.data if t.x is not None and len(t.x)])
        # An open end follows the data at each refresh (Streamlit's plotly.js has no one-sided autorange).
        lo, hi = (float(xs.min()) if lo is None else lo), (float(xs.max()) if hi is None else hi)
        fig.update_xaxes(range=[lo, hi], autorange=False)
    return fig, "; ".join(notes)


def _trace_style(panel: Panel, n_runs: int, r_i: int, m_i: int, run: str, metric: str) -> dict:
    """One run, one colour per metric. Several runs: one colour per run in every panel, and the
    metrics of a panel told apart by dash."""
    if n_runs == 1:
        return {"name": metric, "colour": COLOURS[m_i % len(COLOURS)], "dash": "solid"}
    return {"name": f"{run} · {metric}", "colour": COLOURS[r_i % len(COLOURS)], "dash": DASHES[m_i % len(DASHES)]}


def _metric_traces(
    env: pd.DataFrame, ys: pd.Series, raw: bool, band: bool, shape: str, dense: bool, name: str, colour: str, dash: str
) -> list[go.Scatter]:
    """The (smoothed) line of one metric through its buckets, with its raw points faintly behind
    it, or with a min-max band: the buckets' where points were bucketed, a run group's spread."""
    hidden = {"legendgroup": name, "showlegend": False, "hoverinfo": "skip"}
    traces = []
    if raw:
        marker = {"size": 3, "color": colour, "opacity": 0.25}
        traces.append(go.Scatter(x=env["x"], y=ys, mode="markers", marker=marker, name=f"{name} (raw)", **hidden))
    elif band:
        edge = {"width": 0, "color": colour, "shape": "hv" if shape == "steps" else "linear"}
        traces.append(go.Scatter(x=env["x"], y=env["lo"], mode="lines", line=edge, name=f"{name} (min)", **hidden))
        band = {"fill": "tonexty", "fillcolor": _translucent(colour), "line": edge}
        traces.append(go.Scatter(x=env["x"], y=env["hi"], mode="lines", name=f"{name} (max)", **band, **hidden))
    if shape == "events":
        marker = {"size": 7, "color": colour}
        return [*traces, go.Scatter(x=env["x"], y=env["line"], mode="markers", marker=marker, name=name, legendgroup=name)]
    line = {"color": colour, "dash": dash, "width": 2, "shape": "hv" if shape == "steps" else "linear"}
    mode = "lines" if dense else "lines+markers"
    return [*traces, go.Scatter(x=env["x"], y=env["line"], mode=mode, line=line, name=name, legendgroup=name)]


def _translucent(colour: str, alpha: float = 0.2) -> str:
    """'#rrggbb' -> 'rgba(r, g, b, alpha)' for a band behind its line."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _lay_out(fig: go.Figure, panel: Panel, x: str, log_y: bool) -> None:
    fig.update_layout(
        title=panel.title,
        height=320,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        uirevision=panel.title,  # keeps the user's zoom when the figure is redrawn with new data
        legend={"orientation": "h", "y": -0.2},
        xaxis_title={"step": "step", "time": "wall time", "hours": "hours since start"}[x],
    )
    if log_y:
        fig.update_yaxes(type="log")
        ys = [np.asarray(t.y, dtype=float) for t in fig.data if t.y is not None and len(t.y)]
        positive = np.concatenate(ys)[np.concatenate(ys) > 0] if ys else np.array([])
        if positive.size:  # label 1-2-5 only: plotly's own minor labels read "1000, 9, 8, ... 2, 100"
            ticks = log_ticks(float(positive.min()), float(positive.max()))
            fig.update_yaxes(tickvals=ticks, ticktext=[tick_text(t) for t in ticks])
    if not fig.data:
        fig.add_annotation(text="no data yet", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)


def _add_markers(fig: go.Figure, rs: RunSeries, x: str, y_top: float | None) -> None:
    """Phase changes as dotted vertical lines, alerts as red crosses with their message on hover."""
    if not rs.phases.empty:
        changes = rs.phases[rs.phases["step"] > 0]
        for at, name in zip(with_x(changes, x, rs.start_t), changes.get("name", [""] * len(changes))):
            # add_vline's own annotation fails on date axes; a separate annotation works on all
            fig.add_vline(x=at, line_dash="dot", line_color="grey")
            fig.add_annotation(x=at, y=1, yref="paper", text=str(name), showarrow=False, xanchor="left")
    if not rs.alerts.empty and y_top is not None:
        xs = with_x(rs.alerts, x, rs.start_t)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[y_top] * len(xs),
                mode="markers",
                marker={"symbol": "x", "color": "red", "size": 9},
                name=f"{rs.run} alerts",
                hovertext=[f"{a.rule}: {a.message}" for a in rs.alerts.itertuples()],
                hoverinfo="text",
            )
        )
