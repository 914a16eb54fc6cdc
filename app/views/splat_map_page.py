"""Splat map: every splat mean projected to 2-D or 3-D. PCA draws at once; UMAP (cosine) is
computed in a background process, cached on disk per checkpoint, and replaces PCA when ready."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import streamlit as st

from app.projection import ProjectionJob, cache_file, load_array, pca_fit, place_by_neighbours
from app.resources import LOAD_ERRORS, choose_checkpoint, file_key, jobs, loaded_run, loaded_splats, show_load_error
from app.settings import TOPIC_KEY, folders
from app.splatmap import COLOUR_BY, nearest_splats, selected_splats, splat_figure, word_vector


class Options(NamedTuple):
    method: str
    dims: int
    colour: str
    typed: str
    search: str


@st.cache_data(max_entries=8, show_spinner=False)
def pca_of(path_str: str, key: str, dims: int, _means: np.ndarray):
    return pca_fit(_means, dims)


def page() -> None:
    st.title("Splat map")
    path = choose_checkpoint(folders())
    if path is None:
        return
    options = sidebar()
    try:
        key = file_key(path)
        data = loaded_splats(str(path), key)
    except LOAD_ERRORS as err:
        show_load_error(err, path)
        return
    coords_pca, pca_mean, pca_axes = pca_of(str(path), key, options.dims, data.means)
    umap_coords = load_array(path, f"umap{options.dims}") if options.method == "UMAP" else None
    nearest_ids = load_array(path, "nearest")
    coords = umap_coords if umap_coords is not None else coords_pca
    shown = "UMAP" if umap_coords is not None else "PCA"
    caption = (
        f"{path.parent.name}/{path.name} · step {data.step} · all {len(data.means):,} splats drawn · {shown} {options.dims}-D"
    )
    if shown == "PCA":
        explained = coords_pca.var(axis=0).sum() / ((data.means - pca_mean) ** 2).sum(axis=1).mean()
        caption += f" ({explained:.1%} of the variance)"
    st.caption(caption)
    pending = pending_job(path, options, umap_coords, nearest_ids)
    if pending is not None:
        st.fragment(job_progress, run_every=1.0)(pending)

    def project(points: np.ndarray) -> np.ndarray:  # new points onto the map shown
        return (points - pca_mean) @ pca_axes.T if shown == "PCA" else place_by_neighbours(points, data.means, coords)

    nearest = nearest_labels(path, key, nearest_ids)
    words = word_points(path, key, options.typed, data.token_embeddings, project)
    path_xy = langevin_overlay(path, project)
    found = search_results(path, key, options.search, data, nearest)
    axes = tuple(f"{shown} {i + 1}" for i in range(options.dims))
    figure = splat_figure(coords, data.stats, options.colour, nearest, words, path_xy, axis_names=axes, found=found)
    event = st.plotly_chart(figure, key="splat-map", width="stretch", on_select="rerun", selection_mode=("box", "lasso"))
    hand_over_topic(path, event, data.means)
    if shown == "UMAP" and words:
        st.caption(
            "On the UMAP map a word sits at the cosine-weighted mean of its 8 nearest splats (UMAP's own placement of "
            "new points, without refitting)."
        )


def hand_over_topic(path: Path, event, means: np.ndarray) -> None:
    """Splats selected with the box or lasso become a topic the Generate page can use."""
    ids = selected_splats(event)
    if ids:
        st.session_state[TOPIC_KEY] = {"checkpoint": str(path), "ids": ids, "means": means[ids]}
    chosen = st.session_state.get(TOPIC_KEY)
    if chosen and chosen["checkpoint"] == str(path):
        st.caption(f"{len(chosen['ids'])} splats selected: Generate's constraints panel can use them as a topic.")
    else:
        st.caption("Select splats with the box or lasso tool to hand them to Generate as a topic.")


def sidebar() -> Options:
    with st.sidebar:
        hint = "PCA is exact and instant; UMAP (cosine metric) keeps neighbourhoods and is cached once computed"
        method = st.radio("Projection", ["UMAP", "PCA"], horizontal=True, key="map_method", help=hint)
        dims = st.radio("Dimensions", [2, 3], horizontal=True, key="map_dims")
        colour = COLOUR_BY[st.selectbox("Colour by", list(COLOUR_BY), key="map_colour")]
        typed = st.text_input("Overlay words (comma separated)", "", key="map_words", placeholder="king, queen, river")
        search = st.text_input("Find the splats nearest a word", "", key="map_search", placeholder="river")
    return Options(method, dims, colour, typed, search)


def pending_job(path: Path, options: Options, umap_coords, nearest_ids) -> ProjectionJob | None:
    """The background job this view still waits for (UMAP, else the nearest tokens), or None."""
    if options.method == "UMAP" and umap_coords is None:
        return start_job(path, options.dims)
    return start_job(path, None) if nearest_ids is None else None


def start_job(path: Path, umap_dims: int | None) -> ProjectionJob:
    target = str(cache_file(path, f"umap{umap_dims}" if umap_dims else "nearest"))
    registry = jobs()
    job = registry.get(target)
    if job is None or job.state()[0] == "failed" and st.session_state.get("map_retry") == target:
        registry[target] = job = ProjectionJob(path, umap_dims)
    return job


def job_progress(pending: ProjectionJob) -> None:
    state, fraction, message = pending.state()
    if state == "running":
        what = "UMAP map" if pending.umap_dims else "nearest tokens"
        text = (
            f"computing the {what} in the background: {message} ({time.time() - pending.started:.0f} s); PCA is shown meanwhile"
        )
        st.progress(fraction, text=text)
    elif state == "done":
        st.rerun()
    else:
        st.error(f"The background map job failed: {message}")
        if st.button("Try again"):
            st.session_state["map_retry"] = str(pending.target)
            st.rerun()


def run_tokenizer(path: Path, key: str, missing: str):
    """The checkpoint's tokenizer, or None with a warning that starts with what is `missing`."""
    try:
        return loaded_run(str(path), key)[2]
    except LOAD_ERRORS as err:
        st.warning(f"{missing}: {err}")
        return None


def nearest_labels(path: Path, key: str, nearest_ids) -> list[str] | None:
    tokenizer = None if nearest_ids is None else run_tokenizer(path, key, "Nearest tokens are not shown")
    if tokenizer is None:
        return None
    return [" · ".join(repr(tokenizer.token_text(int(t))) for t in row[:3]) for row in nearest_ids]


def word_points(path: Path, key: str, typed: str, token_embeddings, project: Callable) -> list[tuple[str, np.ndarray]]:
    words: list[tuple[str, np.ndarray]] = []
    tokenizer = run_tokenizer(path, key, "Words are not drawn") if typed.strip() else None
    for word in (w.strip() for w in typed.split(",") if w.strip() and tokenizer is not None):
        ids = tokenizer.encode(" " + word)
        if ids:
            label = word if len(ids) == 1 else f"{word} (mean of {len(ids)} tokens)"
            words.append((label, project(word_vector(token_embeddings, ids)[None])[0]))
    return words


def search_results(path: Path, key: str, word: str, data, nearest: list[str] | None) -> np.ndarray | None:
    """The splats nearest a typed word (cosine of their means to the word's point), as a table
    below the map; their ids, ringed on the map."""
    tokenizer = run_tokenizer(path, key, "Search is not available") if word.strip() else None
    if tokenizer is None:
        return None
    ids = tokenizer.encode(" " + word.strip())
    if not ids:
        st.warning(f"{word!r} has no tokens to search with.")
        return None
    found, cos = nearest_splats(data.means, word_vector(data.token_embeddings, ids), 10)
    rows = {"splat": found, "cosine": np.round(cos, 3)} | {name: data.stats[name][found] for name in ("kappa", "alpha")}
    if nearest is not None:
        rows["nearest tokens"] = [nearest[i] for i in found]
    st.caption(f"The 10 splats nearest {word.strip()!r} (ringed on the map)")
    st.dataframe(rows, hide_index=True)
    return found


def langevin_overlay(path: Path, project: Callable) -> np.ndarray | None:
    trace = st.session_state.get("langevin_path")
    if trace is None or trace["checkpoint"] != str(path) or not st.checkbox("Draw the last Langevin path from Generate"):
        return None
    return project(np.asarray(trace["points"]))


page()
