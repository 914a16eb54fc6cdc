"""Training curves of one or more runs, refreshed live from the new bytes of each log."""

import time
from dataclasses import dataclass

import numpy as np
import streamlit as st

from app.curves import (
    PANELS,
    X_AXES,
    RunSeries,
    add_derived,
    config_differences,
    convert_x,
    energy_trend,
    group_series,
    is_flat,
    panel_data,
    panel_figure,
    run_groups,
)
from app.resources import refreshed_logs
from app.runlog import RunLog
from app.settings import Folders, folders
from app.summary import read_notes, run_matches, run_tags


@dataclass(frozen=True)
class View:
    """What the sidebar chose."""

    runs: list[str]
    x: str
    method: str
    strength: float
    show_raw: bool
    titles: list[str]
    x_range: tuple[float | None, float | None]  # the zoom every panel shares (None: that end follows the data)
    grouped: bool = False  # runs that differ only in their seed drawn as one mean line with a band


def page() -> None:
    where = folders()
    st.title("Training curves")
    logs = refreshed_logs(where)
    if not logs:
        st.info(f"No runs under {where.logs / 'ebm'} yet. Start one with `ebm-train --detach`.")
        return
    view = sidebar({log.run_id: log for log in logs}, where)
    config_table(logs, view.runs, view.grouped)
    st.fragment(live_panels, run_every=where.refresh_s)(where, view)


def sidebar(logs: dict[str, RunLog], where: Folders) -> View:
    with st.sidebar:
        query = st.text_input("Filter runs", "", key="curve_filter", placeholder="a tag, part of a name, or lr=0.003")
        ids = [run for run, log in logs.items() if matches(query, log, where)]
        if query and not ids:
            st.caption("No run matches the filter.")
        chosen = st.multiselect("Runs", ids, default=ids[:1], key="curve_runs")
        x_label = st.radio("x axis", list(X_AXES), horizontal=True, key="curve_x", on_change=convert_x_range, args=(logs,))
        st.session_state.setdefault("curve_x_unit", X_AXES[x_label])
        method = st.radio(
            "Smoothing",
            ["ema", "mean", "none"],
            horizontal=True,
            key="curve_smooth",
            help="ema: debiased exponential average; mean: trailing moving average",
        )
        if method == "ema":
            strength = st.slider("EMA weight", 0.0, 0.99, 0.9, 0.01, key="curve_beta")
        elif method == "mean":
            strength = st.slider("Window (points)", 1, 500, 25, key="curve_window")
        else:
            strength = 0.0
        show_raw = st.checkbox("Show raw points", True, key="curve_raw")
        grouped = st.checkbox(
            "Group runs that differ only in seed",
            False,
            key="curve_group",
            help="one line per group: the mean over its runs at each step, with a band from their min to their max",
        )
        all_titles = [p.title for p in PANELS]
        titles = st.multiselect("Panels", all_titles, default=all_titles, key="curve_panels")
        st.caption("Zoom every panel at once here, or one chart with its toolbar; both stay through refreshes.")
        on_time = X_AXES[x_label] == "time"  # a wall-clock axis is zoomed in the charts themselves
        lo = st.number_input("x from", value=None, key="curve_x_from", placeholder="start", disabled=on_time)
        hi = st.number_input("x to", value=None, key="curve_x_to", placeholder="latest", disabled=on_time)
    x_range = (None, None) if on_time else (lo, hi)
    return View(chosen, X_AXES[x_label], method, strength, show_raw, titles, x_range, grouped)


def matches(query: str, log: RunLog, where: Folders) -> bool:
    if not query.strip():
        return True
    notes, meta = read_notes(where, log.run_id), log.meta or {}
    return run_matches(query, log.run_id, notes.get("name") or meta.get("name", ""), run_tags(notes), meta.get("config", {}))


def convert_x_range(logs: dict[str, RunLog]) -> None:
    """When the x axis changes unit, the shared zoom keeps the same stretch of training (read
    along the first chosen run) instead of the same numbers in the new unit."""
    new, old = X_AXES[st.session_state["curve_x"]], st.session_state.get("curve_x_unit", "step")
    st.session_state["curve_x_unit"] = new
    chosen = [logs[r] for r in st.session_state.get("curve_runs") or [] if r in logs]
    batch = chosen[0].frame("batch") if chosen else None
    start_t = chosen[0].meta["t"] if chosen and chosen[0].meta else None
    ok = batch is not None and not batch.empty and start_t is not None
    steps = batch["step"].to_numpy(float) if ok else np.array([])
    hours = (batch["t"].to_numpy(float) - start_t) / 3600 if ok else np.array([])
    for key in ("curve_x_from", "curve_x_to"):
        value = st.session_state.get(key)
        st.session_state[key] = None if value is None else convert_x(value, old, new, steps, hours)


def run_series(log: RunLog) -> RunSeries:
    frames = {"batch": log.frame("batch"), "eval+epoch": log.frames("eval", "epoch"), "soc": log.frame("soc")}
    start_t = log.meta["t"] if log.meta else None
    frames = {source: add_derived(frame) for source, frame in frames.items()}
    return RunSeries(run=log.run_id, frames=frames, start_t=start_t, phases=log.frame("phase"), alerts=log.frame("alert"))


def panel_view(panel, series: list[RunSeries], view: View) -> None:
    """One panel: the chart, its meaning, a log-scale switch and its data as CSV."""
    log_y = st.session_state.get(f"log-{panel.title}", panel.log_y)
    fig, note = panel_figure(
        panel, series, view.x, view.method, view.strength, show_raw=view.show_raw, log_y=log_y, x_range=view.x_range
    )
    st.plotly_chart(fig, key=f"panel-{panel.title}", width="stretch")
    st.caption(panel.help + (f" · {note}" if note else ""))
    left, right = st.columns(2)
    left.toggle("log scale", value=panel.log_y, key=f"log-{panel.title}")
    data = panel_data(panel, series).to_csv(index=False).encode()
    right.download_button(
        "data (CSV)",
        data,
        file_name=f"{panel.title.split(' (')[0].replace(' ', '_')}.csv",
        mime="text/csv",
        key=f"csv-{panel.title}",
    )


def config_table(logs: list[RunLog], chosen: list[str], grouped: bool = False) -> None:
    if len(chosen) < 2:
        return
    configs = {log.run_id: (log.meta or {}).get("config", {}) for log in logs if log.run_id in chosen}
    table = config_differences(configs)
    if grouped:  # which line of the charts each run is drawn in
        groups = run_groups(configs)
        table.loc["(group)"] = [next(f"group {i + 1}" for i, g in enumerate(groups) if run in g) for run in table.columns]
    with st.expander(f"Config differences between the {len(configs)} runs ({len(table)} fields)"):
        if table.empty:
            st.write("The runs share every config value.")
        else:
            st.dataframe(table)


def panel_grid(panels: list, series: list[RunSeries], view: View) -> None:
    columns = st.columns(2)
    for i, panel in enumerate(panels):
        with columns[i % 2]:
            panel_view(panel, series, view)


def live_panels(where: Folders, view: View) -> None:
    t0 = time.perf_counter()
    logs = [log for log in refreshed_logs(where) if log.run_id in view.runs]
    series = [run_series(log) for log in logs]
    if not series:
        st.info("Pick at least one run in the sidebar.")
        return
    if view.grouped:
        by_run = {rs.run: rs for rs in series}
        groups = run_groups({log.run_id: (log.meta or {}).get("config", {}) for log in logs})
        series = [group_series([by_run[r] for r in group]) for group in groups]
        st.caption("groups: " + "; ".join(", ".join(group) for group in groups))
    for rs in series:
        batch = rs.frames["batch"]
        if "energy" in batch:
            st.caption(f"{rs.run} energy {energy_trend(batch['energy'])}")
    chosen = [p for p in PANELS if p.title in view.titles]
    flat = [p for p in chosen if is_flat(p, series)]
    panel_grid([p for p in chosen if p not in flat], series, view)
    if flat:
        with st.expander(f"{len(flat)} flat or empty panel(s): " + ", ".join(p.title for p in flat)):
            panel_grid(flat, series, view)
    st.caption(f"updated {time.strftime('%H:%M:%S')} in {time.perf_counter() - t0:.2f} s · refreshes every {where.refresh_s:g} s")


page()
