"""The context-conditioned splat term (ebm.attractors) against its definition, term by term."""

import math

import torch
from conftest import trained_looking_model

from ebm.attractors import (
    as_splat_energy,
    attractor_energy_and_grad,
    entries,
    log_matches,
    log_normaliser,
    target_gain,
    top_cosines,
    vocab_gains,
)
from ebm.energy import splat_energy_and_grad
from ebm.geometry import normalize, random_points
from ebm.langevin import langevin_sample
from ebm.model import EBMModel
from ebm.objective import energy_nll, targets_of
from ebm.ops import gather_dot, linear_logsumexp
from ebm.scoring import token_logprobs


def _reference_logits(model: EBMModel, tokens: torch.Tensor, n_targets: int) -> torch.Tensor:
    """log pi_w - E(e_w; c) / T by the definition, one context and one token at a time, in float64."""
    cfg, s = model.cfg, model.splats
    with torch.no_grad():
        g, u, h = (x.reshape(-1, cfg.latent_dim).double() for x in model.contexts(tokens[:, :-1], n_targets))
        emb, mu, key, kappa = model.embeddings.double(), s.mu.double(), s.key.double(), s.kappa.double()
        alpha, tau, T = s.log_alpha.exp().double(), float(s.tau), cfg.vocab_temperature
        c = model.beta.double() * g + u
        q = normalize(c + h @ model.query.weight.double().T)
        retrieved = model.neighbours.search(s, torch.cat([q, torch.zeros_like(q)], -1).float())
        top = model.neighbours.current(s, model.embeddings).splat_top
        out = torch.empty(c.shape[0], cfg.vocab_size, dtype=torch.float64)
        gamma = model.log_strength.exp().double()
        for n in range(c.shape[0]):
            ids = retrieved[n].tolist()
            kernels = {i: alpha[i] * torch.exp(kappa[i] * (key[i] @ q[n] - 1) / tau) for i in ids}
            null = model.log_null.exp().double()
            for w in range(cfg.vocab_size):
                gain = 0.0
                for i in ids:
                    if w in top[i].tolist():
                        match = gamma * kernels[i] / (null + sum(kernels.values()))  # the responsibility, times gamma
                        gain += float(match * torch.exp(kappa[i] * (mu[i] @ emb[w] - 1) / tau))
                out[n, w] = model.log_prior[w].double() + c[n] @ emb[w] / T + math.log1p(gain)
    return out


def test_exact_normalisation_against_term_by_term_reference():
    model = trained_looking_model()
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1))
    reference = torch.log_softmax(_reference_logits(model, tokens, 4), -1)  # (N, V)
    targets = tokens[:, -4:].reshape(-1)
    expected = reference.gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(token_logprobs(model, tokens, 4).reshape(-1).double(), expected, rtol=0, atol=2e-5)
    # Training normalises with Z(c) over k * m entries instead of V columns: the same number.
    with torch.no_grad():
        nll = energy_nll(model, targets_of(model, tokens, 4))
    assert abs(nll.item() + expected.mean().item()) < 2e-5
    assert reference.exp().sum(-1).sub(1).abs().max() < 1e-12
    gains = reference - torch.log_softmax(_base_logits(model, tokens, 4), -1)
    assert (gains.max(-1).values - gains.min(-1).values).min() > 0.1  # the splats did reshape p_E


def _base_logits(model, tokens, n_targets):
    cfg = model.cfg
    with torch.no_grad():
        g, u, _ = (x.reshape(-1, cfg.latent_dim).double() for x in model.contexts(tokens[:, :-1], n_targets))
        c = model.beta.double() * g + u
        return c @ model.embeddings.double().T / cfg.vocab_temperature + model.log_prior.double()


def _context_nll(c, emb, bias, q, mu, key, log_alpha, kappa, log_strength, log_null, tau, idx, top, targets):
    """The context term's exact NLL from its pure parts, for gradient checks (float64)."""
    from ebm.energy import splat_log_kernels

    lse = linear_logsumexp(c, emb, bias, torch.float64)
    log_match = log_matches(splat_log_kernels(q, key, log_alpha, kappa, tau, idx), log_strength, log_null)
    e = entries(log_match, kappa, tau, top, top_cosines(mu, emb, top), idx)
    base_logp = gather_dot(c, emb, e.ids) + bias[e.ids] - lse[:, None]
    base_t = (c * emb[targets]).sum(-1) + bias[targets]
    return lse - base_t - target_gain(e, targets) + log_normaliser(base_logp, e)


def test_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(2)
    n, v, k, d, m = 5, 40, 3, 6, 7

    def leaf(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()

    c, emb, bias = leaf(n, d), normalize(torch.randn(v, d, generator=gen, dtype=torch.float64)).requires_grad_(), leaf(v)
    q = normalize(torch.randn(n, d, generator=gen, dtype=torch.float64)).requires_grad_()
    mu = normalize(torch.randn(10, d, generator=gen, dtype=torch.float64)).requires_grad_()
    log_alpha, kappa = leaf(10), (1 + 3 * torch.rand(10, generator=gen, dtype=torch.float64)).requires_grad_()
    idx = torch.stack([torch.randperm(10, generator=gen)[:k] for _ in range(n)])
    top = torch.stack([torch.randperm(v, generator=gen)[:m] for _ in range(10)])
    targets = torch.cat([top[idx[:3, 0], 0], torch.randint(0, v, (2,), generator=gen)])  # some targets with gains
    key = normalize(torch.randn(10, d, generator=gen, dtype=torch.float64)).requires_grad_()
    inputs = (c, emb, bias, q, mu, key, log_alpha, kappa, leaf(()), leaf(()))
    assert torch.autograd.gradcheck(lambda *x: _context_nll(*x, 0.5, idx, top, targets), inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_energy_gradient_matches_autograd_and_the_splat_energy_form():
    gen = torch.Generator().manual_seed(3)
    n, d, k, tau, T = 7, 16, 4, 0.3, 0.7
    mu, z = random_points(20, d, gen), random_points(n, d, gen).requires_grad_()
    kappa = 1 + 5 * torch.rand(20, generator=gen)
    log_match, idx = torch.randn(n, k, generator=gen), torch.randint(0, 20, (n, k), generator=gen)
    energy, grad = attractor_energy_and_grad(z, mu, kappa, tau, log_match, idx, T)
    (auto,) = torch.autograd.grad(energy.sum(), z)
    torch.testing.assert_close(grad, auto, rtol=1e-5, atol=1e-6)
    # The same energy as a plain splat energy over each chain's own splats (the Vulkan chain's form).
    mu_v, log_alpha_v, kappa_v, tau_v, idx_v = as_splat_energy(mu, kappa, tau, log_match, idx, T)
    e_v, g_v = splat_energy_and_grad(z.detach(), mu_v, log_alpha_v, kappa_v, tau_v, idx_v)
    torch.testing.assert_close(e_v, energy.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_v, grad, rtol=1e-5, atol=1e-6)
    # Attractors only lower the energy, and more where the splats are.
    assert (energy < 0).all()


def test_vocab_gains_sum_repeated_tokens():
    e = entries(
        torch.log(torch.tensor([[1.0, 2.0]])),
        torch.ones(3),
        1.0,
        torch.tensor([[0, 1], [1, 2], [0, 0]]),
        torch.ones(3, 2),
        torch.tensor([[0, 1]]),
    )
    expected = torch.log1p(torch.tensor([[1.0, 3.0, 2.0, 0.0]]))  # token 1 listed by both splats
    torch.testing.assert_close(vocab_gains(e, 4), expected)
    torch.testing.assert_close(target_gain(e, torch.tensor([1])), expected[:, 1])


def _vmf_mass(kappa: float) -> float:
    """The integral of exp(kappa (mu . z - 1)) over S^2."""
    return 2 * math.pi * (1 - math.exp(-2 * kappa)) / kappa


def test_sampler_matches_the_known_vmf_mixture():
    # At chain temperature T the stationary density is proportional to 1 + sum_i a_i exp(kappa_i
    # (mu_i . z - 1)): a uniform part of mass 4 pi and vMF parts of closed-form masses on S^2.
    gen = torch.Generator().manual_seed(4)
    T = tau = 1.0
    mu, kappa, a = torch.eye(3)[:2], torch.tensor([6.0, 3.0]), torch.tensor([20.0, 8.0])
    log_match, idx = a.log()[None], torch.tensor([[0, 1]])

    def fn(z, step):
        rows = z.shape[0]
        e, g = attractor_energy_and_grad(z, mu, kappa, tau, log_match.expand(rows, 2), idx.expand(rows, 2), T)
        return {"total": e}, g

    run = langevin_sample(random_points(4000, 3, gen), fn, 2500, 0.02, 1.0, T, gen)
    masses = torch.tensor([4 * math.pi, a[0] * _vmf_mass(6.0), a[1] * _vmf_mass(3.0)])
    share = masses / masses.sum()  # uniform, splat 0, splat 1
    # Share of samples within 60 degrees of mu_0, component by component: the uniform part's cap
    # area, splat 0's closed-form cap mass, and splat 1's mass in that cap by Monte Carlo.
    cap = 0.5
    own_cap = (1 - math.exp(6.0 * (cap - 1))) / (1 - math.exp(-12.0))
    u = random_points(400000, 3, gen)
    other_cap = (((u @ mu[0]) > cap).float() * torch.exp(3.0 * (u @ mu[1] - 1))).mean().item() * 4 * math.pi
    expected = share[0] * (1 - cap) / 2 + share[1] * own_cap + share[2] * other_cap / _vmf_mass(3.0)
    got = ((run.z @ mu[0]) > cap).float().mean().item()
    assert abs(got - expected) < 0.03, (got, expected)
    assert share.argmax() == 1  # the strongest splat's basin holds the most mass
