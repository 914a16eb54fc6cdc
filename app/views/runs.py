"""Runs: every run under the logs folder with its state, progress, latest metrics and open alerts."""

import time

import pandas as pd
import streamlit as st

from app.resources import refreshed_logs
from app.runlog import RunLog
from app.settings import Folders, folders
from app.summary import format_age, open_alerts, read_notes, run_summary, save_notes
from app.text import text_block


def page() -> None:
    where = folders()
    st.title("Runs")
    st.fragment(live_runs, run_every=where.refresh_s)(where)


def live_runs(where: Folders) -> None:
    logs = refreshed_logs(where)
    if not logs:
        st.info(
            f"No runs under {where.logs / 'ebm'}. Start one with `ebm-train --detach` "
            "in the folder that holds logs/ and checkpoints/ (or pass --logs / --checkpoints)."
        )
        return
    runs_table(logs, where)
    chosen = st.selectbox("Details of run", [log.run_id for log in logs], key="runs_detail")
    run_details(next(log for log in logs if log.run_id == chosen))
    notes_form(where, chosen)


def runs_table(logs: list[RunLog], where: Folders) -> None:
    rows = pd.DataFrame([run_summary(log, where) for log in logs])
    rows["heartbeat"] = rows.pop("heartbeat_age_s").map(format_age)
    rows["elapsed"] = rows.pop("elapsed_s").map(format_age)
    rows["ETA"] = rows.pop("eta_s").map(format_age)
    st.dataframe(
        rows.drop(columns=["corrupt_lines"]),
        hide_index=True,
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "tokens_per_s": st.column_config.NumberColumn("tokens/s", format="%.0f", help="median of the last 20 batches"),
            "loss": st.column_config.NumberColumn(format="%.3f"),
            "nll": st.column_config.NumberColumn(format="%.3f"),
            "ppl_energy": st.column_config.NumberColumn(format="%.1f"),
            "ppl_decoder": st.column_config.NumberColumn(format="%.1f"),
            "best_ppl_energy": st.column_config.NumberColumn("best ppl_energy", format="%.1f"),
        },
    )
    for row in rows.itertuples():
        if row.corrupt_lines:
            st.warning(f"{row.run}: {row.corrupt_lines} unreadable log line(s) skipped; the rest of the log is shown.")
    st.caption(f"updated {time.strftime('%H:%M:%S')} · {len(logs)} run(s) · refreshes every {where.refresh_s:g} s")


def notes_form(where: Folders, run_id: str) -> None:
    notes = read_notes(where, run_id)
    with st.expander("Name and notes"), st.form(f"notes-{run_id}"):
        name = st.text_input("Name", notes.get("name", ""), key=f"name-{run_id}")
        text = st.text_area("Notes", notes.get("notes", ""), key=f"notes-{run_id}")
        if st.form_submit_button("Save"):
            save_notes(where, run_id, name, text)
            st.success(f"saved to {run_id}/notes.json")


def run_details(log: RunLog) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Open alerts")
        alerts = open_alerts(log)
        if alerts.empty:
            st.success("none in the last 500 steps")
        for a in alerts.itertuples():
            st.warning(f"step {a.step} · {a.rule}: {a.message} — try: {a.advice}")
    with right:
        st.subheader("Latest samples")
        samples = log.frame("sample")
        if samples.empty:
            st.write("none yet (written at each evaluation)")
        for s in samples.tail(4).itertuples():
            st.markdown(text_block((f"step {s.step}: ", ""), (s.prompt, "em"), (" → ", ""), (s.text, "")), unsafe_allow_html=True)
    if log.meta:
        with st.expander("Run configuration"):
            st.json(log.meta, expanded=False)


page()
