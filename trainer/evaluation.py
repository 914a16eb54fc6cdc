"""Held-out scoring and generation quality, shared by the trainer, ebm-evaluate and the dashboard."""

from __future__ import annotations

import math

import numpy as np
import torch

from ebm import TORCH, EBMModel, SamplerSettings, decoder_logprobs, generate, token_logprobs
from ebm.backend import Backend
from ebm.soc import coverage

from .data import Windows


@torch.no_grad()
def score(
    model: EBMModel, windows: Windows, window_ids: np.ndarray, batch_size: int, progress=None, backend: Backend = TORCH
) -> dict:
    """ppl_energy, ppl_decoder and splat coverage on the targets of the given windows."""
    model.eval()
    nll_e = nll_d = 0.0
    covered = n = 0
    emb = model.embeddings
    for start in range(0, len(window_ids), batch_size):
        tokens = torch.from_numpy(windows.batch(window_ids[start : start + batch_size]))
        nll_e -= token_logprobs(model, tokens, windows.targets, backend).sum().item()
        nll_d -= decoder_logprobs(model, tokens, windows.targets, backend=backend).sum().item()
        targets = emb[tokens[:, -windows.targets :].reshape(-1)]
        covered += (
            coverage(model.splats, model.neighbours.index, targets, model.cfg.knn_k, model.cfg.coverage_kernel).sum().item()
        )
        n += targets.shape[0]
        if progress is not None:
            progress(n)
    model.train()
    return {
        "ppl_energy": safe_exp(nll_e / n),
        "ppl_decoder": safe_exp(nll_d / n),
        "nll_energy": nll_e / n,
        "nll_decoder": nll_d / n,
        "coverage": covered / n,
        "tokens": n,
    }


def safe_exp(x: float) -> float:
    """exp that reports a diverged model's perplexity as inf instead of raising OverflowError."""
    return math.exp(x) if x < 700 else math.inf


def distinct_n(tokens: list[int], n: int) -> float:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(tokens: list[int]) -> float:
    """Share of tokens equal to one of the previous four."""
    if len(tokens) < 2:
        return 0.0
    return sum(tokens[i] in tokens[max(0, i - 4) : i] for i in range(1, len(tokens))) / (len(tokens) - 1)


@torch.no_grad()
def generate_samples(
    model: EBMModel,
    prompts: list[list[int]],
    n_tokens: int,
    decode,
    seed: int = 0,
    settings: SamplerSettings | None = None,
    top_k: int = 40,
    backend: Backend = TORCH,
) -> tuple[list[dict], dict]:
    """Generate from each prompt; returns per-sample records and aggregate quality metrics."""
    samples, all_tokens, energies, cosines = [], [], [], []
    for i, prompt in enumerate(prompts):
        ids, steps = generate(model, prompt, n_tokens, settings=settings, top_k=top_k, seed=seed + i, backend=backend)
        path_energy = float(np.mean([s.energies["total"].mean().item() for s in steps])) if steps else float("nan")
        cos = float(np.mean([s.cosine_to_token for s in steps])) if steps else float("nan")
        samples.append(
            {"prompt": decode(prompt), "text": decode(ids), "tokens": ids, "mean_energy": path_energy, "mean_cosine": cos}
        )
        all_tokens.append(ids)
        energies.append(path_energy)
        cosines.append(cos)
    flat = [t for ids in all_tokens for t in ids]
    metrics = {
        "distinct_1": float(np.mean([distinct_n(t, 1) for t in all_tokens])) if all_tokens else 0.0,
        "distinct_2": float(np.mean([distinct_n(t, 2) for t in all_tokens])) if all_tokens else 0.0,
        "repetition": float(np.mean([repetition_rate(t) for t in all_tokens])) if all_tokens else 0.0,
        "mean_path_energy": float(np.mean(energies)) if energies else float("nan"),
        "mean_cosine_to_token": float(np.mean(cosines)) if cosines else float("nan"),
        "n_samples": len(samples),
        "n_tokens": len(flat),
    }
    return samples, metrics
