"""Generate: sampling from a checkpoint in the app process, streamed token by token: Langevin on
the sampler's landscape, with the energy trajectory (and its terms) of every token's run and the
basin it falls into (nearest splat and token at each step), or p_E directly. The backend is chosen
per request, so sessions on different devices share one cached model (and one cached copy per
CUDA device)."""

from pathlib import Path
from typing import NamedTuple

import pandas as pd
import plotly.express as px
import streamlit as st
import torch

from app.access import read_only
from app.constraint_panel import ConstraintRequest, constraint_inputs, generate_constrained, show_constrained
from app.resources import LOAD_ERRORS, all_checkpoints, choose_checkpoint, file_key, loaded_run, model_on, show_load_error
from app.settings import folders
from app.text import prompt_notice, text_block
from ebm import SamplerSettings, backend_for, generate_stream
from ebm.sampler import basin_kappa, basin_of, chain_temperature
from ebm.vulkan.device import VulkanError, get_device, list_devices


class Request(NamedTuple):
    prompt: str
    settings: SamplerSettings
    sample_temperature: float
    top_k: int
    top_p: float
    n_tokens: int
    seed: int
    device: str
    sampler: str = "langevin"
    constraints: ConstraintRequest | None = None


SAMPLERS = {"Langevin": "langevin", "p_E directly": "direct"}
# The two draw from the same law once the chain has mixed, and tie under the reference scorer
# (bench/ablate.py, docs/benchmarks.md "Ablations"); Langevin shows how the token is found.
DEFAULT_SAMPLER = "Langevin"


def page() -> None:
    st.title("Generate")
    if read_only():
        st.info("Generate is turned off on this dashboard (--read-only): it would run the model on the server.")
        return
    where = folders()
    path = choose_checkpoint(where)
    if path is None:
        return
    runs = [loaded(p) for p in (path, compare_choice(where, path)) if p is not None]
    if None in runs:
        return
    side_by_side = len(runs) == 2
    state, model, tokenizer = runs[0][1]
    if not side_by_side:
        st.caption(describe(path, state, model, tokenizer))
    request = request_form(model.cfg, str(path))
    columns = st.columns(2) if side_by_side else [st.container()]
    for column, (p, (state, model, tokenizer)), key in zip(columns, runs, ("generation", "generation_b")):
        with column:
            if side_by_side:
                st.caption(describe(p, state, model, tokenizer))
            show_or_generate(request, p, model, tokenizer, key)
    result = st.session_state.get("generation")
    if result and "samples" not in result:
        energy_panels(result, path)


def describe(path: Path, state: dict, model, tokenizer) -> str:
    tok_name = state.get("tokenizer", tokenizer.name)
    return f"{path.parent.name}/{path.name} · step {state['step']} · {model.splats.n:,} splats · tokenizer {tok_name}"


def loaded(path: Path) -> tuple[Path, tuple] | None:
    try:
        return path, loaded_run(str(path), file_key(path))
    except LOAD_ERRORS as err:
        show_load_error(err, path)
        return None


def compare_choice(where, path: Path) -> Path | None:
    """A second checkpoint (of any run) to continue the same prompt with the same seed, side by side."""
    options = {"(none)": None} | {f"{p.parent.name}/{p.name}": p for p in all_checkpoints(where) if p != path}
    label = st.sidebar.selectbox(
        "Compare with",
        list(options),
        key="gen_compare",
        help="generate from a second checkpoint with the same prompt, settings and seed",
    )
    return options[label]


def show_or_generate(request: "Request | None", path: Path, model, tokenizer, key: str) -> None:
    """Generate on a submitted form; otherwise show the last result of this column, if it is this checkpoint's."""
    if request is not None:
        notice = prompt_notice(len(tokenizer.encode(request.prompt)), model.cfg.context_global, tokenizer.token_text(0))
        if notice:
            st.info(notice)
    if request is not None and request.constraints is not None and request.constraints.active:
        if request.device.startswith("cuda"):
            model = model_on(str(path), file_key(path), request.device.split(" ")[0])
        st.session_state[key] = generate_constrained(
            request.constraints,
            request.prompt,
            request.n_tokens,
            request.sample_temperature,
            request.top_k,
            request.seed,
            model,
            tokenizer,
            str(path),
        )
    elif request is not None:
        generate_panel(request, model, tokenizer, path, key)
        return
    result = st.session_state.get(key)
    if result and result["checkpoint"] == str(path) and "samples" in result:
        show_constrained(result, key)
    elif result and result["checkpoint"] == str(path):
        st.markdown(text_block((result["text"], ""), (tokenizer.decode(result["tokens"]), "strong")), unsafe_allow_html=True)


def chain_inputs(cfg) -> SamplerSettings:
    """The Langevin chain's row of the form, in the units a user reads."""
    a, b, c, d, e = st.columns(5)
    steps = a.number_input("Langevin steps", 1, 2000, cfg.langevin_steps, key="gen_steps")
    dt = b.number_input("dt", 1e-4, 1.0, cfg.langevin_dt, format="%.4f", key="gen_dt")
    gamma = c.number_input("γ (friction)", 0.0, 100.0, cfg.langevin_gamma, key="gen_gamma")
    temperature = d.number_input(
        "Langevin temperature",
        0.0,
        10.0,
        cfg.langevin_T,
        format="%.3f",
        key="gen_T",
        help="per degree of freedom: 1 samples p_E exactly once the chain has mixed; "
        "below 1 the chain favours the deepest basins",
    )
    strength = e.number_input(
        "Basin κ/√(d-1)",
        0.1,
        20.0,
        cfg.langevin_kappa,
        key="gen_kappa",
        help="how sharply each candidate token's basin holds z: higher, and z* decides the "
        "token more; too high, and the chain stays in the first basin it finds",
    )
    chain_T, kappa = chain_temperature(float(temperature), cfg.latent_dim), basin_kappa(float(strength), cfg.latent_dim)
    return SamplerSettings(int(steps), float(dt), float(gamma), chain_T, kappa)


def device_choices() -> list[str]:
    cuda = [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    return ["cpu", *cuda, *(f"vulkan:{i} ({name})" for i, name in enumerate(list_devices()))]


def request_form(cfg, checkpoint: str) -> Request | None:
    with st.form("generate"):
        prompt = st.text_area("Prompt", "The history of the city", key="gen_prompt")
        settings = chain_inputs(cfg)
        a, b, c, d = st.columns(4)
        sample_temperature = a.number_input("Sampling temperature", 0.0, 5.0, 1.0, key="gen_sample_T")
        top_k = b.number_input("top-k (0: off)", 0, cfg.vocab_size, 40, key="gen_top_k")
        top_p = c.slider("top-p", 0.05, 1.0, 1.0, key="gen_top_p")
        n_tokens = d.number_input("Tokens", 1, 200, 20, key="gen_n")
        a, b, c = st.columns(3)
        seed = a.number_input("Seed", 0, 2**31 - 1, 0, key="gen_seed")
        how = "draw each token from the energy at the end of a Langevin run, or from p_E itself"
        sampler = c.selectbox("Sampler", list(SAMPLERS), list(SAMPLERS).index(DEFAULT_SAMPLER), key="gen_sampler", help=how)
        help_ = "CUDA runs the whole model on the GPU; Vulkan scores the vocabulary's energies on the device"
        device = b.selectbox("Device", device_choices(), key="gen_device", help=help_)
        constraints = constraint_inputs(checkpoint)
        if not st.form_submit_button("Generate"):
            return None
    return Request(
        prompt,
        settings,
        float(sample_temperature),
        int(top_k),
        float(top_p),
        int(n_tokens),
        int(seed),
        device,
        SAMPLERS[sampler],
        constraints,
    )


def generate_panel(request: Request, model, tokenizer, path: Path, key: str = "generation") -> None:
    on_vulkan = request.device.startswith("vulkan")
    try:  # Vulkan scores the vocabulary's energies; the chain over the candidates runs in torch
        backend = backend_for(get_device(request.device.split(" ")[0]) if on_vulkan else None)
    except VulkanError as err:
        st.error(f"{err}")
        return
    if request.device.startswith("cuda"):
        model = model_on(str(path), file_key(path), request.device.split(" ")[0])
    out, n = st.empty(), request.n_tokens
    progress = st.progress(0.0, text="sampling ...")
    tokens, rows, paths, basins = [], [], [], []
    stream = generate_stream(
        model,
        tokenizer.encode(request.prompt),
        n,
        request.settings,
        request.sample_temperature,
        request.top_k,
        request.top_p,
        request.seed,
        keep_path=True,
        backend=backend,
        sampler=request.sampler,
    )
    for i, tok in enumerate(stream):
        tokens.append(tok.token)
        out.markdown(text_block((request.prompt, ""), (tokenizer.decode(tokens), "strong")), unsafe_allow_html=True)
        progress.progress((i + 1) / n, text=f"token {i + 1} of {n}")
        piece = tokenizer.token_text(tok.token)
        for term, trace in tok.energies.items():
            rows += [{"token": i, "piece": piece, "step": s, "term": term, "energy": float(e)} for s, e in enumerate(trace)]
        if tok.path is not None:
            paths.append(tok.path.cpu().numpy())
            basins += basin_rows(model, tok.path, i, tokenizer)
    progress.empty()
    st.session_state[key] = {
        "text": request.prompt,
        "tokens": tokens,
        "energies": pd.DataFrame(rows),
        "basins": pd.DataFrame(basins),
        "checkpoint": str(path),
    }
    if key == "generation":  # the first column's paths feed the Splat map
        st.session_state["langevin_paths"] = paths
        if paths:
            st.session_state["langevin_path"] = {"checkpoint": str(path), "points": paths[-1]}


def basin_rows(model, path: torch.Tensor, token: int, tokenizer) -> list[dict]:
    """The nearest splat and token at each step of one token's Langevin path."""
    b = basin_of(model, path.to(model.embeddings.device))
    return [
        {
            "token": token,
            "step": s,
            "nearest splat": int(b.splat[s]),
            "cos to splat": float(b.splat_cos[s]),
            "nearest token": tokenizer.token_text(int(b.token[s])),
            "cos to token": float(b.token_cos[s]),
        }
        for s in range(path.shape[0])
    ]


def energy_panels(result: dict, path: Path) -> None:
    energies = result["energies"]
    if energies.empty:
        st.caption("Sampled from p_E directly: no Langevin run to show.")
        return
    final = energies[energies["step"] == energies["step"].max()]
    title = "Energy at the end of each token's Langevin run"
    fig = px.line(final, x="token", y="energy", color="term", markers=True, hover_data=["piece"], title=title)
    st.plotly_chart(fig, key="gen-final", width="stretch")
    n = len(result["tokens"])
    which = st.slider("Token to inspect", 0, max(n - 1, 1), n - 1, key="gen_which", disabled=n < 2)
    one = energies[energies["token"] == which]
    piece = one["piece"].iloc[0] if not one.empty else ""
    fig = px.line(one, x="step", y="energy", color="term", title=f"Langevin energy trajectory of token {which} ({piece!r})")
    st.plotly_chart(fig, key="gen-trace", width="stretch")
    basin_panel(result.get("basins"), which)
    paths = st.session_state.get("langevin_paths") or []
    if which < len(paths):
        st.session_state["langevin_path"] = {"checkpoint": str(path), "points": paths[which]}
        st.caption("The Splat map page can draw this token's Langevin path (tick 'Draw the last Langevin path').")


def basin_panel(basins: "pd.DataFrame | None", which: int) -> None:
    """Does the path fall into a basin? Cosine to the nearest splat and token along it, and where it settles."""
    if basins is None or basins.empty:
        return
    one = basins[basins["token"] == which]
    long = one.melt(id_vars=["step"], value_vars=["cos to splat", "cos to token"], var_name="to", value_name="cosine")
    fig = px.line(long, x="step", y="cosine", color="to", title=f"Token {which}: cosine to the nearest splat and token")
    st.plotly_chart(fig, key="gen-basin", width="stretch")
    every = max(1, len(one) // 10)
    st.dataframe(
        one.iloc[::every][["step", "nearest splat", "cos to splat", "nearest token", "cos to token"]],
        hide_index=True,
        key="gen-basin-table",
    )


page()
