"""The dashboard's entry point: `streamlit run app/main.py` (what `ebm-dashboard` starts)."""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `app`, `ebm`, `trainer` from a source checkout

from app.access import signed_in  # noqa: E402
from app.settings import folders  # noqa: E402

st.set_page_config(page_title="ebm-lab", page_icon=":material/public:", layout="wide")
if not signed_in():  # a served dashboard with a password: no page runs before it is given
    st.stop()
views = Path(__file__).parent / "views"
page = st.navigation(
    [
        st.Page(views / "runs_page.py", url_path="runs", title="Runs", icon=":material/list:", default=True),
        st.Page(views / "curves_page.py", url_path="curves", title="Training curves", icon=":material/show_chart:"),
        st.Page(views / "splat_map_page.py", url_path="splat_map", title="Splat map", icon=":material/scatter_plot:"),
        st.Page(views / "generate_page.py", url_path="generate", title="Generate", icon=":material/edit_note:"),
        st.Page(views / "diagnose_page.py", url_path="diagnose", title="Diagnose", icon=":material/troubleshoot:"),
    ]
)
where = folders()
st.sidebar.caption(f"logs: {where.logs}\n\ncheckpoints: {where.checkpoints}")
page.run()
