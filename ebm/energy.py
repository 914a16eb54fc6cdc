"""The energy E(z; c) = E_splat(z) + E_geo(z; c) + E_comp(z; c) (docs/design.md, "Energy").

Notation: N points z (N, D); splats mu (K, D), log alpha (K,), kappa (K,); idx (N, k) the
ids of each point's nearest splats; tau the splat temperature; g (N, D) the unit direction
predicted from context, beta > 0 its weight; u (N, D) = sum_s W_s h_s(c).

    k_i(z)    = alpha_i exp(kappa_i (mu_i . z - 1) / tau)
    E_splat   = -tau log sum_{i in N_k(z)} k_i(z)
    E_geo     = -beta z . g
    E_comp    = -z . u

Gradients in closed form (used by the sampler and by score matching; tests check them
against autograd and finite differences):

    grad E_splat = -sum_i w_i kappa_i mu_i,  w = softmax_i(log k_i)    (tau cancels)
    grad E_geo   = -beta g,   grad E_comp = -u
"""

from __future__ import annotations

import torch

from .ops import gather_combine, gather_dot

Tensor = torch.Tensor


def splat_log_kernels(z: Tensor, mu: Tensor, log_alpha: Tensor, kappa: Tensor, tau: float, idx: Tensor) -> Tensor:
    """log k_i(z) for each point's neighbours: (N, D), (K, D), (K,), (K,), (N, k) -> (N, k)."""
    cos = gather_dot(z, mu, idx)  # (N, k)
    return log_alpha[idx] + kappa[idx] * (cos - 1) / tau


def splat_energy(log_kernels: Tensor, tau: float) -> Tensor:
    """(N, k) -> (N,)."""
    return -tau * torch.logsumexp(log_kernels, dim=-1)


def splat_energy_and_grad(
    z: Tensor, mu: Tensor, log_alpha: Tensor, kappa: Tensor, tau: float, idx: Tensor
) -> tuple[Tensor, Tensor]:
    """E_splat (N,) and its Euclidean gradient in z (N, D), in closed form; differentiable in
    the splat parameters (score matching trains through it)."""
    log_k = splat_log_kernels(z, mu, log_alpha, kappa, tau, idx)  # (N, k)
    weights = torch.softmax(log_k, dim=-1)
    grad = gather_combine(-weights * kappa[idx], mu, idx)  # -sum_i w_i kappa_i mu_i, (N, D)
    return splat_energy(log_k, tau), grad


def context_energies(z: Tensor, g: Tensor, beta: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """E_geo and E_comp at matched points and contexts: (N, D) x3 -> (N,), (N,)."""
    return -beta * (z * g).sum(-1), -(z * u).sum(-1)


def context_grad(g: Tensor, beta: Tensor, u: Tensor) -> Tensor:
    """Euclidean gradient of E_geo + E_comp in z: constant in z, (N, D)."""
    return -(beta * g + u)


def vocab_logit_terms(c: Tensor, bias: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """(c / T, bias): the logits of p_E(w | c) = softmax_w(log pi_w - E(e_w; c) / T) are
    (c / T) . e_w + bias_w with c = beta g + u (..., D) and bias = log pi - E_splat / T (V,).

    E_geo + E_comp over the vocabulary is one matmul, -(beta g + u) . e_w; the temperature is
    folded into the (small) operand so no (N, V) tensor is divided.
    """
    return c / temperature, bias
