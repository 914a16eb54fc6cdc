"""Diagnose: the report of `ebm-diagnose` for a checkpoint (same code), and the run's alert history."""

from pathlib import Path

import streamlit as st

from app.resources import LOAD_ERRORS, choose_checkpoint, file_key, refreshed_logs, show_load_error
from app.settings import Folders, folders
from trainer.diagnosis import diagnose, histogram_figures, render_markdown


@st.cache_data(max_entries=4, show_spinner="Diagnosing ...")
def report_of(path_str: str, key: str, logs: str) -> dict:
    return diagnose(Path(path_str), Path(logs))


def page() -> None:
    where = folders()
    st.title("Diagnose")
    path = choose_checkpoint(where)
    if path is None:
        return
    try:
        report = report_of(str(path), file_key(path), str(where.logs))
    except LOAD_ERRORS as err:
        show_load_error(err, path)
        return
    report_panel(report)
    alert_history(where, report["run_id"])


def report_panel(report: dict) -> None:
    st.markdown(render_markdown(report))
    columns = st.columns(2)
    for i, (name, fig) in enumerate(histogram_figures(report).items()):
        with columns[i % 2]:
            st.plotly_chart(fig, key=f"hist-{name}", width="stretch")


def alert_history(where: Folders, run_id: str) -> None:
    st.subheader("Alert history")
    log = next((log for log in refreshed_logs(where) if log.run_id == run_id), None)
    alerts = log.frame("alert") if log is not None else None
    if alerts is None or alerts.empty:
        st.write("No alerts in this run's log.")
    else:
        st.dataframe(alerts[["step", "epoch", "rule", "severity", "message", "advice"]], hide_index=True)


page()
