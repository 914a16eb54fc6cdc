"""Memory splats: attractors written from training text, one per context (docs/design.md, "Memory splats").

Each context c_j of the training text writes one splat: its key is the context's energy
direction k_j = normalize(beta g + u), its mean the token w_j that followed, with a kernel over
the vocabulary so sharp that it attracts that token alone. A scored context with direction q
retrieves its n nearest keys, R(c), and they join the model as mixture components:

    p(w | c) = (1 - lambda) p_E(w | c) + lambda sum_{j in R(c)} r_j(c) [w_j = w]
    r_j(c)   = exp(kappa q . k_j) / sum_{i in R(c)} exp(kappa q . k_i)      a vMF posterior over keys

Both parts are normalised, so the mixture is exact over the whole vocabulary at n terms per
context. Unlike the trained splats' (1 + B_w) boost, a component adds probability to its token
however unlikely p_E finds it: the rare names and numbers a small model cannot place are what
a memory recalls (the form of kNN-LM, Khandelwal et al. 2020, with cosine kernels). kappa and
lambda are fitted on held-out text (`fit_mixture`); the rest has no parameters to train.

Notation: N memory splats, M scored contexts, D latent_dim, n retrieved per context.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import faiss
import numpy as np
import torch

Tensor = torch.Tensor

KAPPAS = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
WEIGHTS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
IVF_FROM = 100_000  # below this many splats an exact search is fast enough


class Recall(NamedTuple):
    """The memory splats a batch of contexts retrieves."""

    sims: Tensor  # (M, n) q . k_j, -inf past the retrieved
    tokens: Tensor  # (M, n) w_j, -1 past the retrieved


def memory_log_prob(recall: Recall, targets: Tensor, kappa: float) -> Tensor:
    """log sum_j r_j(c) [w_j = target]: (M,) -> (M,), -inf where no retrieved splat holds it."""
    log_r = torch.log_softmax(kappa * recall.sims.double(), -1)
    hits = torch.where(recall.tokens == targets[:, None], log_r, torch.full_like(log_r, -math.inf))
    return torch.logsumexp(hits, -1).to(recall.sims.dtype)


def mix(log_p_model: Tensor, log_p_memory: Tensor, weight: float) -> Tensor:
    """log((1 - lambda) p_E + lambda p_memory), elementwise."""
    if weight <= 0:
        return log_p_model
    return torch.logaddexp(log_p_model + math.log1p(-weight), log_p_memory + math.log(weight))


def in_batch_log_prob(keys: Tensor, tokens: Tensor, window: Tensor, kappa: float) -> Tensor:
    """log sum_j r_j(c) [w_j = target] with the batch's other windows as the memory (TRIME's
    in-batch memory, Zhong et al. 2022): keys (N, D) unit, tokens (N,), window (N,) the window of
    each row -> (N,), -inf where no row of another window holds the target. Differentiable in
    the keys on both sides, so training pulls contexts that share a next token together, which is
    what retrieval from a written memory needs."""
    sims = kappa * keys @ keys.T  # (N, N)
    sims = sims.masked_fill(window[:, None] == window[None, :], -math.inf)
    log_r = torch.log_softmax(sims, -1)
    match = (tokens[:, None] == tokens[None, :]) & (window[:, None] != window[None, :])
    found = match.any(-1)
    # rows without a match take a finite stand-in, so that no -inf - -inf reaches the gradient
    hits = torch.where(match, log_r, torch.where(found[:, None], -math.inf, 0.0))
    return torch.where(found, torch.logsumexp(hits, -1), -math.inf)


def fit_mixture(recall: Recall, targets: Tensor, log_p_model: Tensor) -> tuple[float, float, float]:
    """The (kappa, lambda) of the grid with the lowest mean nll on held-out contexts, and that nll."""
    best = (0.0, 0.0, -log_p_model.mean().item())
    for kappa in KAPPAS:
        log_p_memory = memory_log_prob(recall, targets, kappa)
        for weight in WEIGHTS:
            nll = -mix(log_p_model, log_p_memory, weight).mean().item()
            if nll < best[2]:
                best = (kappa, weight, nll)
    return best


class SplatMemory:
    """Keys (N, D) and tokens (N,) of the memory splats, their search index and the mixture's
    kappa and lambda (lambda = 0: the memory is off)."""

    def __init__(self, keys: Tensor, tokens: Tensor, neighbours: int = 64, kappa: float = 40.0, weight: float = 0.0):
        if keys.shape[0] != tokens.shape[0] or keys.dim() != 2:
            raise ValueError(f"memory keys {tuple(keys.shape)} and tokens {tuple(tokens.shape)} do not pair up")
        self.tokens = tokens.long().cpu()
        self.neighbours = min(neighbours, keys.shape[0])
        self.kappa, self.weight = kappa, weight
        self._index = _index(np.ascontiguousarray(keys.detach().float().cpu().numpy()))

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def recall(self, q: Tensor) -> Recall:
        """The n nearest memory splats of unit directions q (M, D)."""
        found_sims, found_ids = self._index.search(np.ascontiguousarray(q.detach().float().cpu().numpy()), self.neighbours)
        ids = torch.from_numpy(found_ids)
        tokens = torch.where(ids >= 0, self.tokens[ids.clamp(min=0)], -1)
        sims = torch.where(ids >= 0, torch.from_numpy(found_sims), -math.inf)
        return Recall(sims.to(q.device), tokens.to(q.device))

    def log_prob(self, q: Tensor, targets: Tensor, log_p_model: Tensor) -> Tensor:
        """log p(target | c) of the mixture: (M, D), (M,), (M,) -> (M,)."""
        if self.weight <= 0:
            return log_p_model
        return mix(log_p_model, memory_log_prob(self.recall(q), targets, self.kappa), self.weight)


def _index(keys: np.ndarray) -> faiss.Index:
    """Exact inner-product search for small memories; for large ones an inverted file of sqrt(N)
    lists, 32 of them probed, trained on 40 points a list (FAISS's advice): an exact search of
    every scored context against a million keys would cost more than the model."""
    d = keys.shape[1]
    index: faiss.Index
    if keys.shape[0] < IVF_FROM:
        index = faiss.IndexFlatIP(d)
    else:
        lists = int(math.sqrt(keys.shape[0]))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(keys.shape[0], min(keys.shape[0], 40 * lists), replace=False)
        index.train(keys[sample])
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", 32)
    index.add(keys)
    return index
