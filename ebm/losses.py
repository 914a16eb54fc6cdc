"""Training objective L = L_nll + l_dsm L_dsm + l_dec L_dec + l_bal L_balance (docs/design.md, "Objective").

Score matching on the sphere S^(d-1), per target e_w and geodesic noise angle sigma:
    tau = sigma / sqrt(d - 1)                          (per-coordinate scale of the tangent noise)
    x~ = exp_{e_w}(eps), eps ~ N(0, tau^2 I) on T_{e_w}  (|eps|, the distance moved, concentrates at sigma)
    s* = log_{x~}(e_w) / tau^2                         (the Riemannian gradient of -dist(x~, e_w)^2 / (2 tau^2))
    s  = -grad_R E(x~; c) / T                          (T = langevin_T, the sampler's temperature)
    L_dsm = sum tau^2 |s - s*|^2 / sum tau^2 |s*|^2      (predicting zero scores exactly 1)

tau^2 |s*|^2 = dist^2 / tau^2 ~ d - 1 at every level, so each noise level weighs the same.
sigma is an angle: with per-coordinate noise of scale sigma the distance moved would be
sigma sqrt(d - 1), past the antipode for sigma >= 0.2 at d = 640 (docs/design-notes.md, section 1).
"""

from __future__ import annotations

import math

import torch

from .geometry import exp_map, log_map, project
from .shard import SOLO, Shard

Tensor = torch.Tensor


def sample_noise_levels(
    n: int, levels: tuple[float, ...], generator: torch.Generator | None = None, device: torch.device | None = None
) -> Tensor:
    """One noise angle per target, drawn uniformly from `levels`: (n, 1)."""
    choice = torch.randint(len(levels), (n,), generator=generator, device=device)
    return torch.tensor(levels, dtype=torch.float32, device=device)[choice].unsqueeze(-1)


def noisy_targets(targets: Tensor, sigma: Tensor, xi: Tensor) -> tuple[Tensor, Tensor]:
    """(N, D) unit targets, (N, 1) geodesic angles, (N, D) standard normal draws -> noisy points
    x~ (N, D) and target scores s* (N, D). The noise is passed in so a data-parallel process can
    keep its rows of the global batch's draw (ebm.shard)."""
    tau = tangent_scale(sigma, targets.shape[1])
    x_noisy = exp_map(targets, project(targets, xi) * tau)
    return x_noisy, log_map(x_noisy, targets) / tau**2


def tangent_scale(sigma: Tensor, dim: int) -> Tensor:
    """Per-coordinate scale of tangent noise whose length (the geodesic distance moved) has
    root mean square sigma on S^(dim-1): the noise has dim - 1 tangent coordinates."""
    return sigma / math.sqrt(dim - 1)


def dsm_loss(
    riemannian_grad: Tensor, target_score: Tensor, sigma: Tensor, temperature: float = 1.0, shard: Shard = SOLO
) -> Tensor:
    """Normalised DSM from grad_R E at x~ (N, D), s* (N, D) and sigma (N, 1) -> (). The weights
    sigma^2 and tau^2 differ by the constant d - 1, which the normaliser cancels.

    The normaliser is the global batch's; a data-parallel process returns W times its share of
    the error, so that the mean over processes (what averaged gradients optimise) is the loss."""
    model_score = -riemannian_grad / temperature
    err = (sigma**2 * (model_score - target_score).pow(2)).sum()
    scale = shard.total((sigma**2 * target_score.pow(2)).sum()).clamp_min(1e-12)
    return err * shard.world / scale
