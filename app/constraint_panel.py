"""The Generate page's constraints: keywords, words to avoid, a right context, a topic (typed, or
the splats selected on the Splat map), each with its weight; samples drawn by ebm.composition
with met / unmet badges and each constraint's energy along the chosen chain."""

from __future__ import annotations

import html
from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st
import torch

from app.settings import TOPIC_KEY
from app.text import escape_text
from ebm.composition import Budget, ChainSettings, compose
from ebm.constraints import DEFAULT_WEIGHTS, KINDS, from_text

DEFAULT_CHAIN = ChainSettings()
METHODS = {
    "Langevin on the span": "langevin",
    "Importance resampling": "importance",
    "Sequential Monte Carlo": "smc",
    "Importance resampling, then moves": "resample-move",
    "Rejection": "rejection",
    "p_E directly (ignores them)": "direct",
}


class ConstraintRequest(NamedTuple):
    keywords: list[str]
    avoid: list[str]
    right_context: str
    topic: list[str]
    topic_splats: np.ndarray | None  # (M, D) splat means chosen on the Splat map
    weights: dict[str, float]
    method: str
    samples: int
    chains: int
    steps: int

    @property
    def active(self) -> bool:
        return bool(self.keywords or self.avoid or self.right_context.strip() or self.topic or self.topic_splats is not None)


def split(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


def constraint_inputs(checkpoint: str) -> ConstraintRequest:
    """The panel inside the Generate form."""
    with st.expander("Constraints (sampled under energies added now: keywords anywhere, infilling, avoid, topic)"):
        a, b = st.columns(2)
        keywords = a.text_input("Keywords (must appear)", "", key="gen_keywords", placeholder="bridge, city")
        avoid = b.text_input("Avoid (must not appear)", "", key="gen_avoid", placeholder="war")
        right = st.text_input("Right context (text that must follow: infilling)", "", key="gen_right")
        topic = a.text_input("Topic words", "", key="gen_topic", placeholder="music, album")
        chosen = st.session_state.get(TOPIC_KEY)
        use_map = chosen is not None and chosen["checkpoint"] == checkpoint
        use_map = (
            b.checkbox(
                f"Topic: the {len(chosen['ids'])} splats selected on the Splat map"
                if use_map
                else "Topic: splats selected on the Splat map (none selected)",
                key="gen_topic_map",
                disabled=not use_map,
            )
            and use_map
        )
        columns = st.columns(len(KINDS))
        weights = {
            kind: float(
                col.number_input(f"weight: {kind.replace('_', ' ')}", 0.0, 100.0, DEFAULT_WEIGHTS[kind], key=f"gen_w_{kind}")
            )
            for kind, col in zip(KINDS, columns)
        }
        a, b, c, d = st.columns(4)
        method = a.selectbox("Method", list(METHODS), key="gen_method")
        samples = b.number_input("Samples", 1, 16, 2, key="gen_samples")
        chains = c.number_input("Chains per sample", 1, 256, DEFAULT_CHAIN.chains, key="gen_chains")
        steps = d.number_input("Chain steps", 1, 2000, DEFAULT_CHAIN.steps, key="gen_chain_steps")
    means = np.asarray(chosen["means"]) if use_map else None
    return ConstraintRequest(
        split(keywords), split(avoid), right, split(topic), means, weights, METHODS[method], int(samples), int(chains), int(steps)
    )


def constraints_from(request: ConstraintRequest, model, tokenizer) -> list:
    """The request's constraints in the model's token space; ValueError names the bad field."""
    directions = None if request.topic_splats is None else torch.as_tensor(request.topic_splats[:, -model.cfg.latent_dim :])
    return from_text(
        tokenizer.encode,
        tokenizer.decode,
        model.embeddings,
        request.keywords,
        request.avoid,
        request.right_context,
        request.topic,
        directions,
        request.weights,
    )


def generate_constrained(
    request: ConstraintRequest, prompt: str, n: int, temperature: float, top_k: int, seed: int, model, tokenizer, checkpoint: str
) -> dict | None:
    """Draw the samples with a status line per sample; None (with the reason shown) on bad input."""
    chain = ChainSettings(chains=request.chains, steps=request.steps)
    samples, status = [], None
    try:
        constraints = constraints_from(request, model, tokenizer)
        status = st.status("sampling under the constraints ...")
        for i in range(request.samples):
            status.update(label=f"sample {i + 1} of {request.samples} ({request.method}) ...")
            samples += compose(
                model,
                tokenizer.encode(prompt),
                n,
                constraints,
                request.method,
                1,
                Budget(drafts=64),
                chain,
                max(temperature, 1e-3),
                top_k,
                seed + i,
            )
    except ValueError as err:
        st.error(f"{err}")
        return None
    status.update(label=f"{request.samples} samples ({request.method})", state="complete")
    return {
        "checkpoint": checkpoint,
        "prompt": prompt,
        "labels": [(c.label or c.kind, c.kind) for c in constraints],
        "method": request.method,
        "samples": [
            {
                "text": tokenizer.decode(s.tokens),
                "met": s.met,
                "energies": s.energies,
                "trace": s.trace,
                "seconds": s.seconds,
                "accepted": s.accepted,
            }
            for s in samples
        ],
    }


def badge(label: str, met: bool) -> str:
    colour = "#1b7f3b" if met else "#b3261e"
    mark = "met" if met else "unmet"
    return (
        f'<span style="background:{colour};color:white;border-radius:4px;padding:0 6px;margin-right:4px;'
        f'font-size:0.8em">{mark}: {html.escape(label)}</span>'
    )


def show_constrained(result: dict, key: str = "generation") -> None:
    """Each sample: badges, then the prompt and its continuation isolated from each other
    (bidi-safe), then the energy of every constraint along the chain that produced it."""
    for i, s in enumerate(result["samples"]):
        badges = "".join(badge(label, s["met"][label]) for label, _ in result["labels"])
        text = f"<bdi>{escape_text(result['prompt'])}</bdi><bdi><strong>{escape_text(s['text'])}</strong></bdi>"
        st.markdown(
            f'<div class="constrained-sample">{badges}<div style="white-space:pre-wrap">{text}</div></div>',
            unsafe_allow_html=True,
        )
        moves = "" if s.get("accepted") is None else f" · {s['accepted']:.0%} of token moves accepted"
        energies = ", ".join(f"{k} {v:.2f}" for k, v in s["energies"].items())
        st.caption(f"sample {i + 1} · {s['seconds']:.1f} s{moves} · energies: {energies}")
    traces = [
        (i, term, step, e)
        for i, s in enumerate(result["samples"])
        for term, trace in s["trace"].items()
        for step, e in enumerate(trace)
    ]
    if not traces:
        st.caption("No chain to show: this method draws tokens from p_E left to right.")
        return
    frame = pd.DataFrame(traces, columns=["sample", "term", "step", "energy"])
    title = "Energy of each constraint (and the model's relaxed energy) along the chosen chain"
    fig = px.line(frame, x="step", y="energy", color="term", facet_col="sample", title=title)
    fig.update_yaxes(matches=None)
    st.plotly_chart(fig, key=f"{key}-constraint-trace", width="stretch")
