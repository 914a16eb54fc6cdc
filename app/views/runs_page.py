"""Runs: every run under the logs folder with its state, progress, latest metrics and open alerts."""

import time

import pandas as pd
import streamlit as st

from app.access import read_only
from app.resources import refreshed_logs
from app.runlog import RunLog
from app.settings import Folders, folders
from app.summary import COLUMN_HELP, MAIN_COLUMNS, open_alerts, read_notes, run_summary, run_tags, save_notes, table_view
from app.text import plain_markdown, text_block, text_table


def run_columns() -> dict:
    """Formats of the Runs table, each column with its one-line help."""
    col, help_ = st.column_config, COLUMN_HELP
    cols: dict = {name: col.Column(help=text) for name, text in help_.items()}
    cols |= {
        "progress": col.ProgressColumn(min_value=0.0, max_value=1.0, format="percent", help=help_["progress"]),
        "tokens_per_s": col.NumberColumn("tokens/s", format="%.0f", help=help_["tokens_per_s"]),
        "best_ppl_energy": col.NumberColumn("best ppl_energy", format="%.1f", help=help_["best_ppl_energy"]),
    }
    for name, fmt in {"loss": "%.3f", "nll": "%.3f", "ppl_energy": "%.1f", "ppl_decoder": "%.1f"}.items():
        cols[name] = col.NumberColumn(format=fmt, help=help_[name])
    return cols


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
    every = st.toggle("All columns", False, key="runs_all_columns", help="timings, losses, splats and the preset too")
    order = None if every else list(MAIN_COLUMNS)
    st.dataframe(table_view(rows), hide_index=True, column_config=run_columns(), column_order=order)
    for row in rows.itertuples():
        if row.corrupt_lines:
            st.warning(f"{row.run}: {row.corrupt_lines} unreadable log line(s) skipped; the rest of the log is shown.")
    st.caption(f"updated {time.strftime('%H:%M:%S')} · {len(logs)} run(s) · refreshes every {where.refresh_s:g} s")


def notes_form(where: Folders, run_id: str) -> None:
    notes, locked = read_notes(where, run_id), read_only()
    with st.expander("Name and notes"), st.form(f"notes-{run_id}"):
        name = st.text_input("Name", notes.get("name", ""), key=f"name-{run_id}", disabled=locked)
        text = st.text_area("Notes", notes.get("notes", ""), key=f"notes-{run_id}", disabled=locked)
        tags = st.text_input("Tags (comma separated)", ", ".join(run_tags(notes)), key=f"tags-{run_id}", disabled=locked)
        if locked:
            st.caption("This dashboard is read-only (--read-only).")
        if st.form_submit_button("Save", disabled=locked) and not locked:
            save_notes(where, run_id, name, text, tags.split(","))
            st.success(f"saved to {run_id}/notes.json")


def samples_across_training(log: RunLog) -> None:
    """The same prompts continued at every evaluation: how the model's text changes as it learns."""
    samples = log.frame("sample")
    if samples.empty:
        return
    prompts = list(dict.fromkeys(samples["prompt"]))
    with st.expander(f"Samples from the same {len(prompts)} prompt(s) at each of {samples['step'].nunique()} evaluations"):
        prompt = st.selectbox("Prompt", prompts, key=f"sample-prompt-{log.run_id}")
        rows = samples[samples["prompt"] == prompt].drop_duplicates("step", keep="last")
        table = [[f"{r.step:,}", r.text, f"{r.mean_energy:.2f}"] for r in rows.itertuples()]
        st.markdown(text_table(["step", "continuation", "mean energy"], table), unsafe_allow_html=True)


def run_details(log: RunLog) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Open alerts")
        alerts = open_alerts(log)
        if alerts.empty:
            st.success("none in the last 500 steps")
        for a in alerts.itertuples():
            st.warning(plain_markdown(f"step {a.step} · {a.rule}: {a.message} — try: {a.advice}"))
    with right:
        st.subheader("Latest samples")
        samples = log.frame("sample")
        if samples.empty:
            st.write("none yet (written at each evaluation)")
        for s in samples.tail(4).itertuples():
            st.markdown(text_block((f"step {s.step}: ", ""), (s.prompt, "em"), (" → ", ""), (s.text, "")), unsafe_allow_html=True)
    samples_across_training(log)
    if log.meta:
        with st.expander("Run configuration"):
            st.json(log.meta, expanded=False)


page()
