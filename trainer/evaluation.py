"""Held-out scoring and generation quality, shared by the trainer, ebm-evaluate and the dashboard."""

from __future__ import annotations

import math

import numpy as np
import torch

from ebm import TORCH, EBMModel, SamplerSettings, decoder_logprobs, generate, token_logprobs
from ebm.backend import Backend
from ebm.memory import SplatMemory
from ebm.mixture import COVERAGE_SHARE
from ebm.soc import coverage

from .data import Windows


@torch.no_grad()
def score(
    model: EBMModel, windows: Windows, window_ids: np.ndarray, batch_size: int, progress=None, backend: Backend = TORCH
) -> dict:
    """ppl_energy, ppl_decoder and splat coverage on the targets of the given windows (the
    trainer's quick validation on a fixed sample of windows)."""
    model.eval()
    totals = np.zeros(4)  # nll_energy, nll_decoder, covered, targets
    share = np.zeros(2)  # summed splat share, targets it covers
    for start in range(0, len(window_ids), batch_size):
        tokens = torch.from_numpy(windows.batch(window_ids[start : start + batch_size]))
        totals += batch_scores(model, tokens, windows.targets, backend)
        s = model.splat_share(tokens.to(model.embeddings.device), windows.targets)
        share += [s.sum().item(), (s >= COVERAGE_SHARE).sum().item()]
        if progress is not None:
            progress(int(totals[3]))
    model.train()
    n = max(totals[3], 1)
    return _summary(*totals) | {"splat_share": share[0] / n, "splat_coverage": share[1] / n}


def windows_within(ids: np.ndarray, seconds_per_window: float | None, budget_s: float) -> np.ndarray:
    """The first of the evaluation windows that score within budget_s at the last evaluation's
    pace (all of them when the pace is unknown; at least one)."""
    if not seconds_per_window or seconds_per_window <= 0:
        return ids
    return ids[: max(1, min(len(ids), int(budget_s / seconds_per_window)))]


def batch_scores(
    model: EBMModel, tokens: torch.Tensor, n_targets: int, backend: Backend = TORCH, memory: SplatMemory | None = None
) -> np.ndarray:
    """Summed -log p_E (mixed with `memory`'s splats if given), -log p_D, covered targets and
    targets of the last n_targets of each window (B, L)."""
    tokens = tokens.to(model.embeddings.device)
    nll_e = -token_logprobs(model, tokens, n_targets, backend, memory).sum().item()
    nll_d = -decoder_logprobs(model, tokens, n_targets, backend=backend).sum().item()
    cfg = model.cfg
    targets = model.splat_points(tokens, n_targets)
    covered = coverage(model.splats, model.neighbours.index, targets, cfg.knn_k, cfg.coverage_kernel).sum().item()
    return np.array([nll_e, nll_d, covered, targets.shape[0]])


def _summary(nll_e: float, nll_d: float, covered: float, n: float) -> dict:
    n = max(n, 1)
    return {
        "ppl_energy": safe_exp(nll_e / n),
        "ppl_decoder": safe_exp(nll_d / n),
        "nll_energy": nll_e / n,
        "nll_decoder": nll_d / n,
        "coverage": covered / n,
        "tokens": int(n),
    }


def sliding_windows(n_tokens: int, context: int, stride: int) -> list[tuple[int, int]]:
    """(end, new) of each window over a text of n_tokens: the window is tokens [end - context - 1,
    end) and scores its last `new` tokens, so every token but the first is scored exactly once,
    each with at least context - stride tokens before it once the text is that long."""
    if not 0 < stride <= context:
        raise ValueError(f"stride must be in 1..{context}, got {stride}")
    out, scored = [], 1  # token 0 has no context: the caller starts the text with end-of-text
    while scored < n_tokens:
        end = min(n_tokens, context + 1 if scored == 1 else scored + stride)
        out.append((end, end - scored))
        scored = end
    return out


@torch.no_grad()
def score_text(
    model: EBMModel,
    tokens: np.ndarray,
    stride: int,
    batch_size: int,
    progress=None,
    backend: Backend = TORCH,
    memory: SplatMemory | None = None,
) -> dict:
    """Every token of a whole text scored once with a sliding window of context_global tokens
    (the literature's protocol for perplexity): sums and token-level perplexities."""
    model.eval()
    targets_done = None if progress is None else (lambda sums: progress(int(sums[-1])))  # sums[-1]: targets so far
    totals = sliding_sums(
        lambda rows, new: batch_scores(model, rows, new, backend, memory),
        tokens,
        model.cfg.context_global,
        stride,
        batch_size,
        targets_done,
    )
    model.train()
    return _summary(*totals)


def sliding_sums(batch_fn, tokens: np.ndarray, context: int, stride: int, batch_size: int, progress=None) -> np.ndarray:
    """The sum of batch_fn(rows (B, L) int64 tensor, new) -> np.ndarray over the sliding windows
    of a whole text (`sliding_windows`); any model that scores the last `new` tokens of each row
    can be scored by the same protocol."""
    totals = None
    for rows, new in sliding_batches(tokens, context, stride, batch_size):
        sums = batch_fn(rows, new)
        totals = sums if totals is None else totals + sums
        if progress is not None:
            progress(totals)
    if totals is None:
        raise ValueError("no window to score: the text needs at least two tokens")
    return totals


def sliding_batches(tokens: np.ndarray, context: int, stride: int, batch_size: int):
    """The windows of `sliding_windows` as batches (rows (B, L) int64 tensor, new), grouped by
    window shape."""
    groups: dict[tuple[int, int], list[int]] = {}  # (window length, new tokens) -> window ends
    for end, new in sliding_windows(len(tokens), context, stride):
        groups.setdefault((min(end, context + 1), new), []).append(end)
    for (length, new), ends in groups.items():
        for start in range(0, len(ends), batch_size):
            rows = np.stack([tokens[end - length : end] for end in ends[start : start + batch_size]])
            yield torch.from_numpy(rows.astype(np.int64)), new


def text_units(text: str) -> dict:
    """What per-word and per-byte figures divide by: whitespace words and UTF-8 bytes."""
    words = text.split()
    return {"words": len(words), "bytes": len(text.encode("utf-8")), "unk_words": sum("<unk>" in w for w in words)}


def per_unit(result: dict, units: dict) -> dict:
    """Word-level perplexity (total nll / words, as GPT-2's paper reports) and bits per byte."""
    out = {}
    for head in ("energy", "decoder"):
        total = result[f"nll_{head}"] * result["tokens"]
        out[f"word_ppl_{head}"] = safe_exp(total / max(units["words"], 1))
        out[f"bits_per_byte_{head}"] = total / math.log(2) / max(units["bytes"], 1)
    return out


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


def sample_log_records(
    model: EBMModel, valid: Windows, window_ids: np.ndarray, decode, step: int, n_tokens: int = 12, backend: Backend = TORCH
) -> list[dict]:
    """The `sample` records of an evaluation: a continuation of the last 8 tokens of each given
    validation window, each with the quality figures of all of them."""
    prompts = [valid.batch(np.array([i]))[0, -9:-1].tolist() for i in window_ids]
    settings = SamplerSettings.from_config(model.cfg)
    samples, quality = generate_samples(model, prompts, n_tokens, decode, seed=step, settings=settings, backend=backend)
    keys = ("prompt", "text", "mean_energy", "mean_cosine")
    return [{**{k: s[k] for k in keys}, **quality} for s in samples]
