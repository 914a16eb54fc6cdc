"""Writing a model's memory splats (ebm.memory) from training text and fitting its mixture on
held-out text, by the same sliding windows that score perplexity."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ebm import EBMModel
from ebm.memory import Recall, SplatMemory, fit_mixture
from ebm.scoring import target_logprobs

from .data import DataError, default_cache_dir, load_corpus, tokenize_split
from .evaluation import sliding_batches

HELD_OUT_TOKENS = 20_000  # enough to fit the memory's two numbers


def memory_texts(corpus: str, tokenizer, train_tokens: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The token ids memory splats are written from (the corpus's train split, its first
    train_tokens if given) and those their mixture is fitted on (the valid split's first
    HELD_OUT_TOKENS)."""
    splits = load_corpus(corpus)
    train, valid = (
        np.asarray(tokenize_split(splits, s, tokenizer, default_cache_dir(), progress=False), dtype=np.int64)
        for s in ("train", "valid")
    )
    if train_tokens:
        train = train[: train_tokens + 1]
    if len(train) < 2 or len(valid) < 2:
        raise DataError(f"--memory {corpus}: its train and valid splits need text; give a larger corpus")
    return train, valid[:HELD_OUT_TOKENS]


@torch.no_grad()
def contexts_of(
    model: EBMModel, tokens: np.ndarray, stride: int, batch_size: int, desc: str, show: bool = True, scored: bool = True
):
    """Every scored context of a text: its energy direction (N, D), the token that follows (N,)
    and, if `scored`, log p_E of that token (N,)."""
    model.eval()
    keys, targets, logps = [], [], []
    cfg, device = model.cfg, model.embeddings.device
    with tqdm(total=len(tokens) - 1, desc=desc, unit="tok", disable=not show) as bar:
        for rows, new in sliding_batches(tokens, cfg.context_global, stride, batch_size):
            rows = rows.to(device)
            g, u, h = (x.reshape(-1, cfg.latent_dim) for x in model.contexts(rows[:, :-1], new))
            keys.append(model.energy_direction(g, u).float().cpu())
            y = rows[:, -new:].reshape(-1)
            targets.append(y.cpu())
            if scored:
                logps.append(target_logprobs(model, g, u, h, y).cpu())
            bar.update(y.shape[0])
    model.train()
    return torch.cat(keys), torch.cat(targets), torch.cat(logps) if scored else None


def build_memory(
    model: EBMModel, train: np.ndarray, held_out: np.ndarray, stride: int, batch_size: int, show: bool = True
) -> tuple[SplatMemory, dict]:
    """One memory splat per context of `train`, with kappa and lambda fitted on `held_out`;
    returns the memory and what the fit found."""
    keys, tokens, _ = contexts_of(model, train, stride, batch_size, "memory splats", show, scored=False)
    memory = SplatMemory(keys, tokens)
    q, targets, log_p = contexts_of(model, held_out, stride, batch_size, "fitting the mixture", show)
    recall: Recall = memory.recall(q)
    memory.kappa, memory.weight, nll = fit_mixture(recall, targets, log_p)
    fit = {
        "splats": len(memory),
        "kappa": memory.kappa,
        "weight": memory.weight,
        "neighbours": memory.neighbours,
        "held_out_tokens": int(targets.shape[0]),
        "held_out_nll_before": -log_p.mean().item(),
        "held_out_nll_after": nll,
        "search_recall": search_recall(keys, q[:500], recall.sims[:500]),
    }
    return memory, fit


def search_recall(keys: torch.Tensor, q: torch.Tensor, found: torch.Tensor) -> float:
    """Share of queries (M, D) whose exact nearest key is among the retrieved, found (M, n) sims."""
    exact = torch.cat([(part @ keys.T).max(-1).values for part in q.split(100)])
    return (found.max(-1).values >= exact - 1e-5).float().mean().item()


def memory_for(corpus: str, model, tokenizer, stride: int, show: bool, train_tokens: int = 0):
    """Memory splats from the train split of `corpus`, fitted on its valid split (ebm.memory)."""
    train, held_out = memory_texts(corpus, tokenizer, train_tokens)
    return build_memory(model, train, held_out, stride, model.cfg.batch_size, show)
