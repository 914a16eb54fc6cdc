import math

import pytest
import torch

from ebm.energy import splat_energy_and_grad
from ebm.geometry import normalize, random_points
from ebm.langevin import langevin_sample
from ebm.vmf import kappa_for_mean_cosine, mean_resultant_length


def _vmf_energy(mu, kappa):
    def fn(z, step):
        return {"total": -kappa * (z @ mu)}, (-kappa * mu).expand_as(z)

    return fn


def _mean_cosine(d, kappa, temperature, dt, steps, chains, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mu = normalize(torch.randn(d, generator=gen))
    run = langevin_sample(random_points(chains, d, gen), _vmf_energy(mu, kappa), steps, dt, 2.0, temperature, gen)
    cos = run.z @ mu
    return cos.mean().item(), cos.std().item() / math.sqrt(chains), run


def test_d640_samples_match_bessel_ratio():
    # kappa / T chosen so that A_640 = 0.6. The integrator's bias is O(dt): -0.002 at dt = 0.005.
    kappa = kappa_for_mean_cosine(640, 0.6)
    mean, stderr, run = _mean_cosine(640, kappa, 1.0, 0.005, 1200, 500)
    assert abs(mean - mean_resultant_length(640, kappa)) < 0.006, (mean, stderr)
    assert run.energies["total"].shape == (1201, 500)
    assert run.energies["total"][-1].mean() < run.energies["total"][0].mean()  # fell from uniform start


def test_d3_samples_match_closed_form():
    mean, stderr, _ = _mean_cosine(3, 5.0, 1.0, 0.02, 2000, 4000)
    assert abs(mean - mean_resultant_length(3, 5.0)) < max(0.012, 4 * stderr)


@pytest.mark.slow
def test_bias_shrinks_with_step_size():
    kappa = kappa_for_mean_cosine(640, 0.6)
    errors = [abs(_mean_cosine(640, kappa, 1.0, dt, int(6 / dt), 300)[0] - 0.6) for dt in (0.02, 0.005)]
    assert errors[1] < errors[0] / 2


def test_temperature_scales_concentration():
    # Same kappa / T gives the same law.
    kappa = kappa_for_mean_cosine(64, 0.5)
    a, _, _ = _mean_cosine(64, kappa, 1.0, 0.01, 1500, 1500, seed=1)
    b, _, _ = _mean_cosine(64, 3 * kappa, 3.0, 0.01 / 3**0.5, 2600, 1500, seed=2)
    assert abs(a - 0.5) < 0.015 and abs(b - 0.5) < 0.015


def test_two_splat_mass_split_matches_reference_integral():
    # T = tau makes exp(-E/T) the alpha-weighted mixture of two vMF kernels; compare the share of
    # samples nearer mu_1 with the same share under the exact density (importance-weighted grid).
    gen = torch.Generator().manual_seed(3)
    tau, kappa = 0.5, 4.0
    mu = torch.eye(3)[:2]
    log_alpha = torch.log(torch.tensor([0.7, 0.3]))
    kap = torch.full((2,), kappa)
    idx2 = torch.tensor([[0, 1]])

    def fn(z, step):
        e, g = splat_energy_and_grad(z, mu, log_alpha, kap, tau, idx2.expand(z.shape[0], 2))
        return {"total": e}, g

    run = langevin_sample(random_points(3000, 3, gen), fn, 3000, 0.02, 1.0, tau, gen)
    share = ((run.z @ mu[0]) > (run.z @ mu[1])).float().mean().item()
    u = random_points(400000, 3, gen)
    e, _ = splat_energy_and_grad(u, mu, log_alpha, kap, tau, idx2.expand(u.shape[0], 2))
    w = torch.exp(-(e - e.min()) / tau)
    expected = (w * ((u @ mu[0]) > (u @ mu[1])).float()).sum().item() / w.sum().item()
    assert abs(share - expected) < 0.03, (share, expected)
    assert expected > 0.6  # the heavier splat holds more mass


def test_zero_temperature_is_deterministic_descent():
    gen = torch.Generator().manual_seed(0)
    mu = normalize(torch.randn(16, generator=gen))
    z0 = random_points(8, 16, gen)
    a = langevin_sample(z0, _vmf_energy(mu, 5.0), 200, 0.05, 1.0, 0.0)
    b = langevin_sample(z0, _vmf_energy(mu, 5.0), 200, 0.05, 1.0, 0.0)
    torch.testing.assert_close(a.z, b.z)
    assert ((a.z @ mu) > (z0 @ mu)).all()
    torch.testing.assert_close(a.z.norm(dim=-1), torch.ones(8))


def test_kept_path_starts_at_z0_ends_at_z_and_stays_on_the_sphere():
    gen = torch.Generator().manual_seed(1)
    mu = normalize(torch.randn(16, generator=gen))
    z0 = random_points(4, 16, gen)
    run = langevin_sample(z0, _vmf_energy(mu, 5.0), 30, 0.05, 1.0, 0.1, torch.Generator().manual_seed(2), keep_path=True)
    again = langevin_sample(z0, _vmf_energy(mu, 5.0), 30, 0.05, 1.0, 0.1, torch.Generator().manual_seed(2))
    assert run.path.shape == (31, 4, 16) and again.path is None
    torch.testing.assert_close(run.path[0], z0)
    torch.testing.assert_close(run.path[-1], run.z)
    torch.testing.assert_close(run.z, again.z)  # keeping the path does not change the chain
    torch.testing.assert_close(run.path.norm(dim=-1), torch.ones(31, 4))
