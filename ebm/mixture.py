"""Splats as mixture components in probability space: splat_term=mixture (docs/design.md,
"Splat mixture").

Notation as in ebm.attractors: N contexts, each retrieving k splats idx (N, k) with key kernels
k_i(q) = alpha_i exp(kappa_i (key_i . q - 1) / tau); k_0 > 0 learned; top (K, m) each splat's m
nearest tokens. Each retrieved splat is a component of its own over its top tokens, and the
base softmax is the component of weight pi_0:

    pi_0(c) = k_0 / (k_0 + sum_{j in R(c)} k_j(q)),   pi_i(c) = k_i(q) / (k_0 + sum_j k_j(q))
    q_i(w)  = exp(kappa_i (mu_i . e_w - 1) / tau) / Z_i  for w in top_i (else 0)
    p(w | c) = pi_0(c) p_base(w | c) + sum_{i in R(c)} pi_i(c) q_i(w)

The weights sum to one and every q_i is normalised over its own m tokens, so p is exact and
normalised at k * m terms per context. Unlike the boost form p_base (1 + B) / Z, a component can
put mass on a token the base softmax finds unlikely: a mixture in probability space is not
limited by the softmax's rank (Yang et al., "Breaking the softmax bottleneck", ICLR 2018).

A point z of the sphere has no token prior, so the continuous energy that Langevin chains and
score matching see takes the base component as exp(-E_base(z) / T) / Z_base(c):

    E(z; c) = -T log(pi_0 exp(-E_base(z) / T - log Z_base) + sum_i pi_i exp(kappa_i (mu_i . z - 1) / tau - log Z_i))

whose splat part, E(z; c) - E_base(z) up to a constant in z, is -T log(1 + sum_i b_i(z)) with
log b_i(z) = log_match_i + kappa_i (mu_i . z - 1) / tau + E_base(z) / T and
log_match_i = log pi_i - log pi_0 + log Z_base - log Z_i.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .attractors import Entries, log1p_sum_exp
from .ops import gather_combine, gather_dot

Tensor = torch.Tensor


# A target is covered when the splats give it at least this share of its probability: then
# they move its NLL by at least -log(1 - 0.1) = 0.105 nats (docs/design.md, "Splat mixture").
COVERAGE_SHARE = 0.1


class MixtureWeights(NamedTuple):
    log_rest: Tensor  # (N,) log pi_0: the base softmax's weight
    log_pi: Tensor  # (N, k) log pi_i of the retrieved splats


def mixture_weights(log_kernels: Tensor, log_null: Tensor) -> MixtureWeights:
    """log pi_0 and log pi_i from the retrieved splats' log k_i(q) (N, k) and log k_0 ()."""
    null = log_null.expand(log_kernels.shape[0], 1)
    log_w = torch.log_softmax(torch.cat([null, log_kernels], -1), -1)  # (N, k + 1)
    return MixtureWeights(log_w[:, 0], log_w[:, 1:])


def component_logits(kappa: Tensor, tau: float, top_cos: Tensor) -> Tensor:
    """kappa_i (mu_i . e_w - 1) / tau over each splat's top tokens: (K,), (K, m) -> (K, m)."""
    return (kappa / tau)[:, None] * (top_cos - 1)


def component_log_probs(kappa: Tensor, tau: float, top_cos: Tensor) -> Tensor:
    """log q_i(w) over each splat's top tokens: (K,), (K, m) -> (K, m), each row normalised."""
    return torch.log_softmax(component_logits(kappa, tau, top_cos), -1)


def mixture_entries(log_pi: Tensor, log_q: Tensor, top: Tensor, idx: Tensor) -> Entries:
    """The (retrieved splat, top token) pairs with log pi_i(c) + log q_i(w): log_pi (N, k),
    log_q and top (K, m), idx (N, k) -> Entries of M = k * m per context."""
    shape = (idx.shape[0], -1)
    return Entries(top[idx].reshape(shape), (log_pi[:, :, None] + log_q[idx]).reshape(shape))


def target_log_prob(log_rest: Tensor, base_logp: Tensor, e: Entries, targets: Tensor) -> Tensor:
    """log p(w | c) at each context's target: log pi_0 (N,), log p_base(w | c) (N,) -> (N,)."""
    hits = torch.where(e.ids == targets[:, None], e.log_gain, torch.full_like(e.log_gain, float("-inf")))
    return torch.logsumexp(torch.cat([(log_rest + base_logp)[:, None], hits], -1), -1)


def vocab_log_probs(log_rest: Tensor, base_logp: Tensor, e: Entries) -> Tensor:
    """log p(w | c) of every token from the base log-probabilities (N, V) -> (N, V)."""
    splat_mass = base_logp.new_zeros(base_logp.shape).scatter_add_(1, e.ids, e.log_gain.exp())
    return torch.logaddexp(log_rest[:, None] + base_logp, splat_mass.log())


def target_responsibility(log_rest: Tensor, base_logp: Tensor, e: Entries, targets: Tensor) -> Tensor:
    """The share of p(w | c) at the target that the splats give, 1 - pi_0 p_base(w) / p(w): (N,)."""
    return 1 - torch.exp(log_rest + base_logp - target_log_prob(log_rest, base_logp, e, targets))


def continuous_log_match(w: MixtureWeights, log_norm: Tensor, idx: Tensor, base_lse: Tensor) -> Tensor:
    """log_match_i = log pi_i - log pi_0 + log Z_base - log Z_i of the continuous energy:
    log Z_i (K,), idx (N, k), log Z_base (N,) -> (N, k)."""
    return w.log_pi - w.log_rest[:, None] + base_lse[:, None] - log_norm[idx]


def mixture_energy_and_grad(
    z: Tensor,
    base: tuple[Tensor, Tensor],
    mu: Tensor,
    kappa: Tensor,
    tau: float,
    log_match: Tensor,
    idx: Tensor,
    temperature: float,
) -> tuple[Tensor, Tensor]:
    """The splat part of the continuous mixture energy (N,) and its Euclidean gradient (N, D) at
    points z (N, D), given base = (E_base(z) (N,), grad E_base (N, D)):

        grad = -sum_i w_i (T kappa_i / tau mu_i + grad E_base),  w_i = b_i / (1 + sum_j b_j)
    """
    base_energy, base_grad = base
    T = temperature
    log_b = log_match + kappa[idx] * (gather_dot(z, mu, idx) - 1) / tau + base_energy[:, None] / T  # (N, k)
    lse = log1p_sum_exp(log_b)
    weights = torch.exp(log_b - lse[:, None])
    grad = gather_combine(-T * weights * kappa[idx] / tau, mu, idx) - weights.sum(-1, keepdim=True) * base_grad
    return -T * lse, grad
