"""Context-conditioned splat attractors: the splat term of the energy (docs/design.md, "Attractors").

Notation: N contexts with unit queries q (N, D); splats with means mu (K, D) among the tokens,
keys (K, D) among the queries, log alpha (K,), kappa (K,); tau the splat temperature; idx (N, k)
the splats whose keys are nearest each query, R(c); top (K, m) each splat's m nearest tokens;
T the vocabulary temperature; gamma > 0 and k_0 > 0 learned. With the key kernel
k_i(q) = alpha_i exp(kappa_i (key_i . q - 1) / tau):

    r_i(c)       = k_i(q) / (k_0 + sum_{j in R(c)} k_j(q))         the context's responsibilities
    b_i(z; c)    = gamma r_i(c) exp(kappa_i (mu_i . z - 1) / tau)  splat i's pull on z, in context c
    E_attr(z; c) = -T log(1 + sum_{i in R(c)} b_i(z; c))

A splat attracts only in the contexts whose query its key matches, and there it lowers the
energy of the tokens near its mean: a learned, sparse memory of which contexts lead to which
tokens, where the base softmax can only tilt the whole vocabulary along one direction. The
match is normalised over the retrieved splats (a mixture's responsibilities): an unnormalised
k_i(q) is ~exp(-kappa / tau) for the nearly orthogonal directions of high dimensions, which
left the term at ~1e-3 nats and its gradients as small. At a token w the sum runs over the
retrieved splats that list w among their m top tokens, so with the rest of the energy as the
base softmax p_base:

    p_E(w | c) = p_base(w | c) (1 + B_w(c)) / Z(c),   B_w(c) = sum_{i in R(c), w in top_i} b_i(e_w; c)
    Z(c)       = 1 + sum_{entries (i, w)} p_base(w | c) b_i(e_w; c)

Z is exact over the whole vocabulary and costs k * m terms per context, not V.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .ops import gather_combine, gather_dot

Tensor = torch.Tensor


class Entries(NamedTuple):
    """The (retrieved splat, top token) pairs of each context, flattened: M = k * m."""

    ids: Tensor  # (N, M) token ids
    log_gain: Tensor  # (N, M) log b_i(e_w; c)


def top_cosines(mu: Tensor, embeddings: Tensor, top: Tensor) -> Tensor:
    """mu_i . e_w for each splat's top tokens: (K, D), (V, D), (K, m) -> (K, m), differentiable."""
    return gather_dot(mu, embeddings, top)


def entries(log_match: Tensor, kappa: Tensor, tau: float, top: Tensor, top_cos: Tensor, idx: Tensor) -> Entries:
    """log b_i(e_w; c) = log gamma r_i(c) + kappa_i (mu_i . e_w - 1) / tau over the retrieved
    splats' top tokens: log_match (N, k) = log gamma r_i(c), kappa (K,), top and top_cos (K, m),
    idx (N, k)."""
    shape = (idx.shape[0], -1)
    log_gain = log_match[:, :, None] + (kappa[idx] / tau)[:, :, None] * (top_cos[idx] - 1)  # (N, k, m)
    return Entries(top[idx].reshape(shape), log_gain.reshape(shape))


def log_matches(log_kernels: Tensor, log_strength: Tensor, log_null: Tensor) -> Tensor:
    """log gamma r_i(c) from the retrieved splats' log k_i(q): (N, k), (), () -> (N, k), with
    r_i = k_i(q) / (k_0 + sum_j k_j(q)); k_0 keeps a context that matches no key unboosted."""
    null = log_null.expand(log_kernels.shape[0], 1)
    return log_kernels - torch.logsumexp(torch.cat([null, log_kernels], -1), -1, keepdim=True) + log_strength


def log1p_sum_exp(x: Tensor, dim: int = -1) -> Tensor:
    """log(1 + sum exp(x)) along dim, stable and finite with no terms or all -inf."""
    shape = list(x.shape)
    shape[dim] = 1
    return torch.logsumexp(torch.cat([x.new_zeros(shape), x], dim), dim)


def log_normaliser(base_logp: Tensor, e: Entries) -> Tensor:
    """log Z(c) from the base log-probabilities of the entries' tokens (N, M) -> (N,)."""
    return log1p_sum_exp(base_logp + e.log_gain)


def target_gain(e: Entries, targets: Tensor) -> Tensor:
    """log(1 + B_w(c)) at each context's target w: (N,) -> (N,)."""
    hits = torch.where(e.ids == targets[:, None], e.log_gain, torch.full_like(e.log_gain, float("-inf")))
    return log1p_sum_exp(hits)


def vocab_gains(e: Entries, vocab_size: int) -> Tensor:
    """log(1 + B_w(c)) for every token: -> (N, V); what the attractors add to the base logits."""
    gains = e.log_gain.new_zeros(e.ids.shape[0], vocab_size).scatter_add_(1, e.ids, e.log_gain.exp())
    return torch.log1p(gains)


def attractor_energy_and_grad(
    z: Tensor, mu: Tensor, kappa: Tensor, tau: float, log_match: Tensor, idx: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """E_attr(z; c) (N,) and its Euclidean gradient in z (N, D) for points z (N, D) whose contexts
    retrieved idx (N, k) with log_match (N, k):

        grad E_attr = -T sum_i w_i (kappa_i / tau) mu_i,  w_i = b_i / (1 + sum_j b_j)
    """
    log_b = log_match + kappa[idx] * (gather_dot(z, mu, idx) - 1) / tau  # (N, k)
    lse = log1p_sum_exp(log_b)
    weights = torch.exp(log_b - lse[:, None])
    grad = gather_combine(-temperature * weights * kappa[idx] / tau, mu, idx)  # (N, D)
    return -temperature * lse, grad


def pair_points(q: Tensor, targets: Tensor) -> Tensor:
    """(q, e_w) / sqrt 2 on S^(2D - 1): a (context, token) pair where splats live under the context
    term, so that a splat's kernel there, alpha_i exp(kappa_i ((key_i . q + mu_i . e_w) / 2 - 1) /
    tau), is high when it matches the context and attracts the token. (N, D) x2 -> (N, 2D)."""
    return torch.cat([q, targets], -1) / math.sqrt(2)


def as_splat_energy(
    mu: Tensor, kappa: Tensor, tau: float, log_match: Tensor, idx: Tensor, temperature: float
) -> tuple[Tensor, Tensor, Tensor, float, Tensor]:
    """The context term of B chains as a plain splat energy -tau' log sum_j k'_j(z) over B * k + 1
    splats of their own (ebm.energy), for kernels that compute only that form: each chain's
    retrieved splats with log alpha' = log gamma r_i(c), kappa' = kappa_i T / tau and tau' = T, plus
    one shared flat splat (mu = 0, kappa = 0) whose kernel 1 is the `1 +`.

    Returns mu' (B k + 1, D), log alpha' (B k + 1,), kappa' (B k + 1,), tau', idx' (B, k + 1).
    """
    n, k = idx.shape
    flat = n * k
    mu_v = torch.cat([mu[idx].reshape(flat, -1), mu.new_zeros(1, mu.shape[1])])
    log_alpha_v = torch.cat([log_match.reshape(flat), log_match.new_zeros(1)])
    kappa_v = torch.cat([(kappa[idx] * temperature / tau).reshape(flat), kappa.new_zeros(1)])
    own = torch.arange(flat, device=idx.device).view(n, k)
    idx_v = torch.cat([own, torch.full((n, 1), flat, dtype=idx.dtype, device=idx.device)], 1)
    return mu_v, log_alpha_v, kappa_v, temperature, idx_v
