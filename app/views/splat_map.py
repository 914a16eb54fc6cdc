"""Splat map: every splat mean projected to 2-D or 3-D. PCA draws at once; UMAP (cosine) is
computed in a background process, cached on disk per checkpoint, and replaces PCA when ready."""

import time

import numpy as np
import streamlit as st

from app.projection import ProjectionJob, cache_file, load_array, pca_fit, place_by_neighbours
from app.resources import LOAD_ERRORS, choose_checkpoint, file_key, jobs, loaded_run, loaded_splats, show_load_error
from app.settings import folders
from app.splatmap import COLOUR_BY, splat_figure

where = folders()
st.title("Splat map")
path = choose_checkpoint(where)
if path is None:
    st.stop()
with st.sidebar:
    method = st.radio(
        "Projection",
        ["UMAP", "PCA"],
        horizontal=True,
        key="map_method",
        help="PCA is exact and instant; UMAP (cosine metric) keeps neighbourhoods and is cached once computed",
    )
    dims = st.radio("Dimensions", [2, 3], horizontal=True, key="map_dims")
    colour = COLOUR_BY[st.selectbox("Colour by", list(COLOUR_BY), key="map_colour")]
    typed = st.text_input("Overlay words (comma separated)", "", key="map_words", placeholder="king, queen, river")

try:
    key = file_key(path)
    data = loaded_splats(str(path), key)
except LOAD_ERRORS as err:
    show_load_error(err, path)
    st.stop()


@st.cache_data(max_entries=8, show_spinner=False)
def pca_of(path_str: str, key: str, dims: int):
    return pca_fit(data.means, dims)


def start_job(umap_dims):
    target = str(cache_file(path, f"umap{umap_dims}" if umap_dims else "nearest"))
    registry = jobs()
    job = registry.get(target)
    if job is None or job.state()[0] == "failed" and st.session_state.get("map_retry") == target:
        registry[target] = job = ProjectionJob(path, umap_dims)
    return job


coords_pca, pca_mean, pca_axes = pca_of(str(path), key, dims)
umap_coords = load_array(path, f"umap{dims}") if method == "UMAP" else None
nearest_ids = load_array(path, "nearest")
pending = None
if method == "UMAP" and umap_coords is None:
    pending = start_job(dims)
elif nearest_ids is None:
    pending = start_job(None)

coords = umap_coords if umap_coords is not None else coords_pca
shown = "UMAP" if umap_coords is not None else "PCA"
n = len(data.means)
caption = f"{path.parent.name}/{path.name} · step {data.step} · all {n:,} splats drawn · {shown} {dims}-D"
if shown == "PCA":
    explained = coords_pca.var(axis=0).sum() / ((data.means - pca_mean) ** 2).sum(axis=1).mean()
    caption += f" ({explained:.1%} of the variance)"
st.caption(caption)

if pending is not None:

    @st.fragment(run_every=1.0)
    def progress() -> None:
        state, fraction, message = pending.state()
        if state == "running":
            what = "UMAP map" if pending.umap_dims else "nearest tokens"
            st.progress(
                fraction,
                text=f"computing the {what} in the background: {message} "
                f"({time.time() - pending.started:.0f} s); PCA is shown meanwhile",
            )
        elif state == "done":
            st.rerun()
        else:
            st.error(f"The background map job failed: {message}")
            if st.button("Try again"):
                st.session_state["map_retry"] = str(pending.target)
                st.rerun()

    progress()

nearest = None
if nearest_ids is not None:
    try:
        _, _, tokenizer = loaded_run(str(path), key)
        nearest = [" · ".join(repr(tokenizer.token_text(int(t))) for t in row[:3]) for row in nearest_ids]
    except LOAD_ERRORS as err:
        st.warning(f"Nearest tokens are not shown: {err}")

words = []
if typed.strip():
    try:
        _, _, tokenizer = loaded_run(str(path), key)
        for word in (w.strip() for w in typed.split(",") if w.strip()):
            ids = tokenizer.encode(" " + word)
            point = data.token_embeddings[ids[0]][None]
            label = word if len(ids) == 1 else f"{word} (first token {tokenizer.token_text(ids[0])!r})"
            xy = (point - pca_mean) @ pca_axes.T if shown == "PCA" else place_by_neighbours(point, data.means, coords)
            words.append((label, xy[0]))
    except LOAD_ERRORS as err:
        st.warning(f"Words are not drawn: {err}")

path_xy = None
trace = st.session_state.get("langevin_path")
if trace is not None and trace["checkpoint"] == str(path) and st.checkbox("Draw the last Langevin path from Generate"):
    points = np.asarray(trace["points"])
    path_xy = (points - pca_mean) @ pca_axes.T if shown == "PCA" else place_by_neighbours(points, data.means, coords)

st.plotly_chart(splat_figure(coords, data.stats, colour, nearest, words, path_xy), key="splat-map", width="stretch")
if shown == "UMAP" and words:
    st.caption(
        "On the UMAP map a word sits at the cosine-weighted mean of its 8 nearest splats (UMAP's own placement of "
        "new points, without refitting)."
    )
