"""Training objective L = L_nll + l_dsm L_dsm + l_dec L_dec + l_bal L_balance (docs/design.md, "Objective").

Score matching on the sphere, per target e_w and noise angle sigma:
    x~ = exp_{e_w}(eps), eps ~ N(0, sigma^2 I) on T_{e_w}
    s* = log_{x~}(e_w) / sigma^2                      (target score, tangent at x~)
    s  = -grad_R E(x~; c) / T                          (T = langevin_T, the sampler's temperature)
    L_dsm = sum sigma^2 |s - s*|^2 / sum sigma^2 |s*|^2   (predicting zero scores exactly 1)

sigma^2 |s*|^2 ~ d - 1 at every level, so each noise level weighs the same. An energy that is
not conditioned on sigma cannot match scores that grow like 1/sigma^2 at all five default
levels, so this loss has a floor well above the original target of 0.1
(docs/design-notes.md gives the numbers).
"""

from __future__ import annotations

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
    """(N, D) unit targets, (N, 1) angles, (N, D) standard normal draws -> noisy points x~ (N, D)
    and target scores s* (N, D). The noise is passed in so a data-parallel process can keep its
    rows of the global batch's draw (ebm.shard)."""
    x_noisy = exp_map(targets, project(targets, xi) * sigma)
    return x_noisy, log_map(x_noisy, targets) / sigma**2


def dsm_loss(
    riemannian_grad: Tensor, target_score: Tensor, sigma: Tensor, temperature: float = 1.0, shard: Shard = SOLO
) -> Tensor:
    """Normalised DSM from grad_R E at x~ (N, D), s* (N, D) and sigma (N, 1) -> ().

    The normaliser is the global batch's; a data-parallel process returns W times its share of
    the error, so that the mean over processes (what averaged gradients optimise) is the loss."""
    model_score = -riemannian_grad / temperature
    err = (sigma**2 * (model_score - target_score).pow(2)).sum()
    scale = shard.total((sigma**2 * target_score.pow(2)).sum()).clamp_min(1e-12)
    return err * shard.world / scale
