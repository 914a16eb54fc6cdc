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
        st.Page(views / "runs.py", title="Runs", icon=":material/list:", default=True),
        st.Page(views / "curves.py", title="Training curves", icon=":material/show_chart:"),
        st.Page(views / "splat_map.py", title="Splat map", icon=":material/scatter_plot:"),
        st.Page(views / "generate.py", title="Generate", icon=":material/edit_note:"),
        st.Page(views / "diagnose.py", title="Diagnose", icon=":material/troubleshoot:"),
    ]
)
where = folders()
st.sidebar.caption(f"logs: {where.logs}\n\ncheckpoints: {where.checkpoints}")
page.run()
