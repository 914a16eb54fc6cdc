"""The splat map figure: every splat as a point (no subsampling), coloured by a statistic, with
its id, statistics and nearest vocabulary tokens on hover; typed words and a Langevin path
can be drawn on top."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

COLOUR_BY = {
    "κ (concentration)": "kappa",
    "α (weight)": "alpha",
    "usage frequency": "usage",
    "age (steps)": "age",
    "phase of birth": "phase",
}


def hover_text(stats: dict[str, np.ndarray], nearest: list[str] | None) -> list[str]:
    rows = []
    for i in range(len(stats["kappa"])):
        text = (
            f"splat {i}<br>κ {stats['kappa'][i]:.3g} · α {stats['alpha'][i]:.3g}<br>"
            f"usage {stats['usage'][i]:.3g} · age {stats['age'][i]:.0f} · phase {int(stats['phase'][i])}"
        )
        if nearest is not None:
            text += f"<br>nearest: {nearest[i]}"
        rows.append(text)
    return rows


def splat_figure(
    coords: np.ndarray,
    stats: dict[str, np.ndarray],
    colour: str,
    nearest: list[str] | None = None,
    words: list[tuple[str, np.ndarray]] | None = None,
    path: np.ndarray | None = None,
    title: str = "",
    axis_names: tuple[str, ...] = ("1", "2", "3"),
    found: np.ndarray | None = None,
) -> go.Figure:
    """coords (K, 2|3); words: (label, (2|3,)); path: (S, 2|3) points of one Langevin run;
    found: ids of splats to ring (a search's result)."""
    three = coords.shape[1] == 3
    scatter = go.Scatter3d if three else go.Scattergl
    axes = {"x": coords[:, 0], "y": coords[:, 1]} | ({"z": coords[:, 2]} if three else {})
    colours, note = colour_marker(stats[colour], colour)
    marker = {"size": 2 if three else 4, "opacity": 0.8, **colours}
    fig = go.Figure(
        scatter(**axes, mode="markers", marker=marker, text=hover_text(stats, nearest), hoverinfo="text", name=f"splats{note}")
    )
    if words:
        w = np.stack([xy for _, xy in words])
        text = [label for label, _ in words]
        marker = {"size": 8 if three else 12, "color": "red", "symbol": "diamond"}
        spread = [LABEL_POSITIONS[i % len(LABEL_POSITIONS)] for i in range(len(text))]  # neighbours' labels apart
        fig.add_trace(_overlay(scatter, w, "words", mode="markers+text", text=text, textposition=spread, marker=marker))
    if found is not None and len(found):
        ring = {"size": 10 if three else 14, "color": "rgba(0,0,0,0)", "line": {"color": "black", "width": 2}}
        fig.add_trace(_overlay(scatter, coords[found], "found", mode="markers", marker=ring))
    if path is not None:
        line, marker = {"color": "black", "width": 2}, {"size": 3, "color": "black"}
        fig.add_trace(_overlay(scatter, path, "Langevin path", mode="lines+markers", line=line, marker=marker))
    fig.update_layout(
        title=title, height=700, margin={"l": 10, "r": 10, "t": 40, "b": 10}, uirevision="splat-map", legend={"orientation": "h"}
    )
    if three:
        fig.update_layout(scene={f"{a}axis_title": n for a, n in zip("xyz", axis_names)})
    else:
        fig.update_layout(xaxis_title=axis_names[0], yaxis_title=axis_names[1])
    return fig


def _overlay(scatter, points: np.ndarray, name: str, **style):
    """A trace drawn over the splats: points (S, 2|3)."""
    axes = {"x": points[:, 0], "y": points[:, 1]} | ({"z": points[:, 2]} if points.shape[1] == 3 else {})
    return scatter(**axes, name=name, **style)


def colour_marker(values: np.ndarray, name: str) -> tuple[dict, str]:
    """Colours for a statistic that show its true range: a log scale for weights and usage spread
    over decades; one colour, and the value in the legend, when every splat has nearly the same
    value (a colour scale stretched over 2.00008 to 2.00012 would paint noise as structure)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi - lo <= 1e-3 * max(abs(hi), abs(lo), 1e-12):
        return {"color": "#440154", "showscale": False}, f" ({name} {lo:.6g} for all: nothing to colour)"
    if name in ("usage", "alpha") and lo > 0 and hi / lo > 100:
        return {
            "color": np.log10(values),
            "colorscale": "Viridis",
            "colorbar": {"title": f"log10 {name}<br>{lo:.3g} to {hi:.3g}"},
        }, ""
    return {"color": values, "colorscale": "Viridis", "colorbar": {"title": f"{name}<br>{lo:.4g} to {hi:.4g}"}}, ""


def selected_splats(event) -> list[int]:
    """Splat ids picked with the box or lasso tool in a plotly_chart selection event (trace 0 holds
    the splats; the words and the Langevin path drawn over them are not splats)."""
    points = event.selection.points if event and event.selection else []
    return sorted({int(p["point_index"]) for p in points if p.get("curve_number", 0) == 0})


LABEL_POSITIONS = ("top center", "bottom center", "middle right", "middle left", "top right", "bottom left")


def word_vector(token_embeddings: np.ndarray, ids: list[int]) -> np.ndarray:
    """A word's point on the sphere: the normalised mean of its tokens' embeddings, so that a word
    of several byte-level tokens (CJK text, rare words) is not placed by its first byte alone."""
    mean = np.asarray(token_embeddings)[ids].mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def nearest_splats(means: np.ndarray, vector: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The k splats whose means (the last D columns: a paired splat's token half) have the
    highest cosine to a unit vector (D,): ids and cosines, best first."""
    mu = means[:, -vector.shape[0] :]
    cos = mu @ vector / np.maximum(np.linalg.norm(mu, axis=1), 1e-12)
    ids = np.argsort(-cos)[:k]
    return ids, cos[ids]
