"""The splat mixture (ebm.mixture, splat_term=mixture) against its definition: a normalised law
term by term, the training NLL equal to the scoring NLL, and the continuous energy's gradient
against autograd and against the energy it is the splat part of."""

import torch
from conftest import trained_looking_model

from ebm.config import small_config
from ebm.energy import context_energies, context_grad
from ebm.geometry import normalize, random_points
from ebm.mixture import mixture_energy_and_grad, mixture_weights, target_responsibility
from ebm.model import EBMModel
from ebm.objective import energy_nll, targets_of
from ebm.scoring import token_logprobs


def _mixture_model(seed: int = 0) -> EBMModel:
    """Trained-looking, with the base softmax's weight lowered from its start (pi_0 >= 0.95)."""
    model = trained_looking_model(seed, splat_term="mixture")
    with torch.no_grad():
        model.log_null.fill_(1.0)
    return model


def test_the_base_softmax_starts_with_most_of_the_mass():
    model = EBMModel(small_config(splat_term="mixture", head_dtype="float32"))
    tokens = torch.randint(0, model.cfg.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        g, u, h = (x.reshape(-1, model.cfg.latent_dim) for x in model.contexts(tokens[:, :-1], 4))
        r = model.retrieve(model.beta * g + u, h)
    assert r.log_rest.exp().min() >= 0.95


def _reference_probs(model: EBMModel, tokens: torch.Tensor, n_targets: int) -> torch.Tensor:
    """pi_0 p_base(w) + sum_i pi_i q_i(w), one context and one splat at a time, in float64;
    returned with p_base and the base component's part, pi_0 p_base."""
    cfg, s = model.cfg, model.splats
    with torch.no_grad():
        g, u, h = (x.reshape(-1, cfg.latent_dim).double() for x in model.contexts(tokens[:, :-1], n_targets))
        emb, mu, key, kappa = model.embeddings.double(), s.mu.double(), s.key.double(), s.kappa.double()
        c = model.beta.double() * g + u
        q = normalize(c + h @ model.query.weight.double().T)
        retrieved = model.neighbours.search(s, torch.cat([q, torch.zeros_like(q)], -1).float())
        top = model.neighbours.current(s, model.embeddings).splat_top
        base = torch.softmax(c @ emb.T / cfg.vocab_temperature + model.log_prior.double(), -1)  # (N, V)
        out, rest = torch.zeros_like(base), torch.zeros_like(base)
        for n in range(c.shape[0]):
            ids = retrieved[n].tolist()
            kernels = torch.stack([s.log_alpha[i].double().exp() * torch.exp(kappa[i] * (key[i] @ q[n] - 1)) for i in ids])
            total = model.log_null.exp().double() + kernels.sum()
            out[n] = rest[n] = base[n] * model.log_null.exp().double() / total
            for i, k_i in zip(ids, kernels):
                comp = torch.softmax(kappa[i] * (emb[top[i]] @ mu[i] - 1), -1)  # tau = 1
                out[n, top[i]] += k_i / total * comp
    return out, base, rest


def test_the_law_is_normalised_and_matches_the_reference_term_by_term():
    model = _mixture_model()
    tokens = torch.randint(0, model.cfg.vocab_size, (3, 12), generator=torch.Generator().manual_seed(1))
    ref, base, _ = _reference_probs(model, tokens, 4)
    torch.testing.assert_close(ref.sum(-1), torch.ones(ref.shape[0], dtype=torch.float64))
    with torch.no_grad():
        g, u, h = (x.reshape(-1, model.cfg.latent_dim) for x in model.contexts(tokens[:, :-1], 4))
        logp = torch.log_softmax(model.energy_logits(g, u, h), -1)
    torch.testing.assert_close(logp.exp().double(), ref, rtol=1e-4, atol=1e-6)
    targets = tokens[:, -4:].reshape(-1)
    expected = ref.log().gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(token_logprobs(model, tokens, 4).reshape(-1).double(), expected, rtol=0, atol=2e-5)
    assert (ref - base).abs().sum(-1).min() > 0.05  # the splats move real mass off the base softmax


def test_the_training_nll_is_the_exact_scoring_nll():
    model = _mixture_model(2)
    tokens = torch.randint(0, model.cfg.vocab_size, (4, 12), generator=torch.Generator().manual_seed(3))
    nll = energy_nll(model, targets_of(model, tokens, 4))
    expected = -token_logprobs(model, tokens, 4).mean()
    torch.testing.assert_close(nll, expected, rtol=1e-5, atol=1e-5)


def test_a_component_can_lift_a_token_the_base_softmax_finds_unlikely():
    """Probability-space mixing: the law at a token is at least pi_i q_i(w), whatever p_base(w)."""
    weights = mixture_weights(torch.tensor([[0.0, -1.0]]), torch.tensor(0.0))
    pi = weights.log_pi.exp()
    torch.testing.assert_close(weights.log_rest.exp() + pi.sum(), torch.tensor([1.0]))
    from ebm.attractors import Entries

    e = Entries(torch.tensor([[7, 8]]), weights.log_pi + torch.log(torch.tensor([[1.0, 1.0]])))
    base_logp = torch.tensor([-30.0])  # the base softmax gives token 7 e^-30
    share = target_responsibility(weights.log_rest, base_logp, e, torch.tensor([7]))
    assert share.item() > 1 - 1e-9


def test_continuous_energy_gradient_matches_autograd_and_the_whole_mixture():
    gen = torch.Generator().manual_seed(4)
    n, d, k_splats, k, T, tau = 5, 16, 30, 4, 0.7, 0.5
    z = random_points(n, d, gen).double().requires_grad_()
    mu = random_points(k_splats, d, gen).double()
    kappa = (1 + 5 * torch.rand(k_splats, generator=gen)).double()
    idx = torch.stack([torch.randperm(k_splats, generator=gen)[:k] for _ in range(n)])
    log_match = torch.randn(n, k, generator=gen).double()
    g, u = random_points(n, d, gen).double(), 0.3 * torch.randn(n, d, generator=gen).double()
    beta = torch.tensor(2.0, dtype=torch.float64)
    geo, comp = context_energies(z, g, beta, u)
    energy, grad = mixture_energy_and_grad(z, (geo + comp, context_grad(g, beta, u)), mu, kappa, tau, log_match, idx, T)
    (auto,) = torch.autograd.grad(energy.sum(), z)
    torch.testing.assert_close(grad, auto)
    # E_base + E_splat = -T log(exp(-E_base / T) + sum_i exp(log_match_i + kappa_i (mu_i . z - 1) / tau)) + const
    log_terms = log_match + kappa[idx] * ((z[:, None, :] * mu[idx]).sum(-1) - 1) / tau
    whole = -T * torch.logsumexp(torch.cat([-(geo + comp)[:, None] / T, log_terms], -1), -1)
    torch.testing.assert_close(geo + comp + energy, whole)


def test_a_mixture_model_trains_a_step_and_reaches_its_splats():
    model = _mixture_model(5)
    tokens = torch.randint(0, model.cfg.vocab_size, (4, 12), generator=torch.Generator().manual_seed(6))
    energy_nll(model, targets_of(model, tokens, 4)).backward()
    s = model.splats
    for name, p in (
        ("mu", s.mu_raw),
        ("key", s.key_raw),
        ("kappa", s.kappa_raw),
        ("alpha", s.log_alpha),
        ("null", model.log_null),
    ):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_the_splat_share_is_what_the_components_add_at_the_target():
    model = _mixture_model(7)
    tokens = torch.randint(0, model.cfg.vocab_size, (3, 12), generator=torch.Generator().manual_seed(8))
    ref, _, rest = _reference_probs(model, tokens, 4)
    targets = tokens[:, -4:].reshape(-1)[:, None]
    expected = 1 - rest.gather(1, targets) / ref.gather(1, targets)
    share = model.splat_share(tokens, 4).double()
    torch.testing.assert_close(share, expected.squeeze(1), rtol=1e-4, atol=1e-5)
    assert share.max() > 0.01  # the reference model's splats do carry some targets
