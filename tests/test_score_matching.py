"""Geodesic score matching (ebm.losses): noise levels are the angles the targets move, and the
target score is the closed-form Riemannian gradient of the tangent Gaussian's log density."""

import math

import torch

from ebm.geometry import dist, normalize, project, random_points
from ebm.losses import dsm_loss, noisy_targets, tangent_scale


def moved(d: int, sigma: float, n: int, gen) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    e = random_points(n, d, gen, dtype=torch.float64)
    xi = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x, score = noisy_targets(e, torch.full((n, 1), sigma, dtype=torch.float64), xi)
    return e, x, score


def test_on_s2_the_angle_moved_is_rayleigh_with_the_stated_scale(gen):
    # On S^2 the tangent noise is a 2-D Gaussian of scale tau = sigma / sqrt(2): its length is
    # Rayleigh(tau), mean tau sqrt(pi / 2) = sigma sqrt(pi) / 2, mean square 2 tau^2 = sigma^2.
    sigma = 0.2
    e, x, _ = moved(3, sigma, 200_000, gen)
    theta = dist(x, e)
    assert abs(theta.mean().item() / (sigma * math.sqrt(math.pi) / 2) - 1) < 0.01
    assert abs(theta.pow(2).mean().item() / sigma**2 - 1) < 0.01


def test_in_640_dimensions_every_level_moves_its_angle_and_weighs_the_same(gen):
    d = 640
    for sigma in (0.01, 0.1, 0.5):
        e, x, score = moved(d, sigma, 4000, gen)
        theta = dist(x, e)
        assert abs(theta.mean().item() / sigma - 1) < 0.01  # concentrated: sd / mean ~ 1 / sqrt(2 (d - 1))
        assert theta.std().item() < 0.05 * sigma
        tau = tangent_scale(torch.tensor(sigma), d).item()
        assert abs((tau**2 * score.pow(2).sum(-1)).mean().item() / (d - 1) - 1) < 0.01


def test_the_target_score_is_the_gradient_of_the_log_density_on_s2(gen):
    """s* = grad_R of -dist(x, e)^2 / (2 tau^2) at x, against central finite differences along
    two tangent directions at each noisy point."""
    sigma = 0.3
    e, x, score = moved(3, sigma, 50, gen)
    tau2 = tangent_scale(torch.tensor(sigma, dtype=torch.float64), 3).item() ** 2

    def log_density(points):
        return -dist(points, e).pow(2) / (2 * tau2)

    h = 1e-6
    for _ in range(2):
        v = normalize(project(x, torch.randn(x.shape, generator=gen, dtype=torch.float64)))
        fd = (log_density(normalize(x + h * v)) - log_density(normalize(x - h * v))) / (2 * h)
        assert torch.allclose((score * v).sum(-1), fd, rtol=1e-5, atol=1e-6)
    assert torch.allclose((score * x).sum(-1), torch.zeros(50, dtype=torch.float64), atol=1e-10)  # tangent at x


def test_predicting_zero_scores_gives_one_and_the_true_score_gives_zero(gen):
    _, x, score = moved(64, 0.1, 100, gen)
    sigma = torch.full((100, 1), 0.1, dtype=torch.float64)
    assert abs(dsm_loss(torch.zeros_like(x), score, sigma).item() - 1) < 1e-12
    assert dsm_loss(-score, score, sigma).item() < 1e-20  # riemannian_grad = -s* at T = 1
