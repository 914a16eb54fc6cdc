"""Training curves of one or more runs, refreshed live from the new bytes of each log."""

import time

import streamlit as st

from app.curves import PANELS, X_AXES, RunSeries, add_derived, energy_trend, panel_figure
from app.resources import refreshed_logs
from app.settings import folders

where = folders()
st.title("Training curves")
logs = refreshed_logs(where)
if not logs:
    st.info(f"No runs under {where.logs / 'ebm'} yet. Start one with `ebm-train --detach`.")
    st.stop()

ids = [log.run_id for log in logs]
with st.sidebar:
    chosen = st.multiselect("Runs", ids, default=ids[:1], key="curve_runs")
    x_label = st.radio("x axis", list(X_AXES), horizontal=True, key="curve_x")
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
    titles = st.multiselect("Panels", [p.title for p in PANELS], default=[p.title for p in PANELS], key="curve_panels")


@st.fragment(run_every=where.refresh_s)
def curves() -> None:
    t0 = time.perf_counter()
    series = []
    for log in refreshed_logs(where):
        if log.run_id not in chosen:
            continue
        series.append(
            RunSeries(
                run=log.run_id,
                frames={
                    "batch": log.frame("batch"),
                    "eval+epoch": log.frames("eval", "epoch"),
                    "soc": add_derived(log.frame("soc")),
                },
                start_t=log.meta["t"] if log.meta else None,
                phases=log.frame("phase"),
                alerts=log.frame("alert"),
            )
        )
    if not series:
        st.info("Pick at least one run in the sidebar.")
        return
    for rs in series:
        batch = rs.frames["batch"]
        if "energy" in batch:
            st.caption(f"{rs.run} energy {energy_trend(batch['energy'])}")
    columns = st.columns(2)
    panels = [p for p in PANELS if p.title in titles]
    for i, panel in enumerate(panels):
        fig, note = panel_figure(panel, series, X_AXES[x_label], method, strength, show_raw=show_raw)
        with columns[i % 2]:
            st.plotly_chart(fig, key=f"panel-{panel.title}", width="stretch")
            if note:
                st.caption(note)
    st.caption(f"updated {time.strftime('%H:%M:%S')} in {time.perf_counter() - t0:.2f} s · refreshes every {where.refresh_s:g} s")


curves()
