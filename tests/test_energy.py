import torch

from ebm.backend import TORCH
from ebm.energy import context_energies, context_grad, splat_energy, splat_energy_and_grad, splat_log_kernels
from ebm.geometry import exp_map, normalize, project, random_points, tangent_noise

D, K, N, k = 12, 30, 16, 6


def _setup(gen):
    mu = random_points(K, D, gen, torch.float64)
    log_alpha = torch.randn(K, generator=gen, dtype=torch.float64) * 0.3
    kappa = torch.rand(K, generator=gen, dtype=torch.float64) * 20 + 1
    z = random_points(N, D, gen, torch.float64)
    idx = torch.randint(K, (N, k), generator=gen)
    return mu, log_alpha, kappa, z, idx


def test_splat_energy_reference(gen):
    mu, log_alpha, kappa, z, idx = _setup(gen)
    tau = 0.1
    slow = torch.stack(
        [
            -tau * torch.log(sum(log_alpha[i].exp() * torch.exp(kappa[i] * (mu[i] @ z[n] - 1) / tau) for i in idx[n]))
            for n in range(N)
        ]
    )
    fast = splat_energy(splat_log_kernels(z, mu, log_alpha, kappa, tau, idx), tau)
    torch.testing.assert_close(fast, slow)


def test_splat_closed_form_gradient_matches_autograd(gen):
    mu, log_alpha, kappa, z, idx = _setup(gen)
    z = z.clone().requires_grad_(True)
    energy, grad = splat_energy_and_grad(z, mu, log_alpha, kappa, 0.1, idx)
    (auto,) = torch.autograd.grad(splat_energy(splat_log_kernels(z, mu, log_alpha, kappa, 0.1, idx), 0.1).sum(), z)
    torch.testing.assert_close(grad, auto)


def _geodesic_fd(energy_fn, z, v, h=1e-5):
    return (energy_fn(exp_map(z, h * v)) - energy_fn(exp_map(z, -h * v))) / (2 * h)


def test_riemannian_gradients_match_finite_differences_along_geodesics(gen):
    mu, log_alpha, kappa, z, idx = _setup(gen)
    g = random_points(N, D, gen, torch.float64)
    u = torch.randn(N, D, generator=gen, dtype=torch.float64)
    beta = torch.tensor(1.7, dtype=torch.float64)
    v = normalize(tangent_noise(z, 1.0, gen))
    terms = {
        "splat": (
            lambda x: splat_energy_and_grad(x, mu, log_alpha, kappa, 0.1, idx)[0],
            splat_energy_and_grad(z, mu, log_alpha, kappa, 0.1, idx)[1],
        ),
        "geo": (lambda x: context_energies(x, g, beta, u)[0], -beta * g),
        "comp": (lambda x: context_energies(x, g, beta, u)[1], -u),
    }
    for name, (fn, grad) in terms.items():
        directional = (project(z, grad) * v).sum(-1)
        torch.testing.assert_close(_geodesic_fd(fn, z, v), directional, atol=1e-6, rtol=1e-6, msg=name)
    torch.testing.assert_close(context_grad(g, beta, u), -(beta * g + u))


def test_single_splat_is_a_vmf_energy(gen):
    # One splat: E = -tau log alpha + kappa (1 - mu.z), whatever tau is.
    mu = random_points(1, D, gen, torch.float64)
    z = random_points(N, D, gen, torch.float64)
    idx = torch.zeros(N, 1, dtype=torch.long)
    for tau in (0.05, 0.3, 2.0):
        e = splat_energy(
            splat_log_kernels(
                z, mu, torch.tensor([0.4], dtype=torch.float64), torch.tensor([7.0], dtype=torch.float64), tau, idx
            ),
            tau,
        )
        torch.testing.assert_close(e, -tau * 0.4 + 7.0 * (1 - z @ mu[0]))


def test_vocab_logits_fold_temperature_into_one_addmm(gen):
    from ebm.model import unigram_log_prior

    emb = torch.nn.functional.normalize(torch.randn(300, 16, generator=gen), dim=-1)
    splat = torch.randn(300, generator=gen)
    log_prior = unigram_log_prior(torch.randint(0, 50, (300,), generator=gen), 300)
    g, u = torch.randn(2, 5, 7, 16, generator=gen)
    beta = torch.tensor(1.7)
    # log pi_w - E(e_w; c) / T written out: E = E_splat - (beta g + u) . e_w
    ref = log_prior + ((beta * g + u) @ emb.T - splat) / 0.37
    logits = TORCH.vocab_logits(emb, log_prior - splat / 0.37, (beta * g + u).reshape(-1, 16), 0.37).view(5, 7, 300)
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-5)
