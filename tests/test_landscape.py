"""The sampler's landscape (ebm.landscape): its energy, gradient and Gibbs law against known answers."""

import math

import torch

from ebm.config import EBMConfig
from ebm.geometry import normalize, random_points
from ebm.landscape import Landscape, draw, filter_logits, landscape, landscape_energy_and_grad, posterior_logits
from ebm.langevin import langevin_sample
from ebm.sampler import SamplerSettings, chain_temperature, landscape_fn
from ebm.vmf import mean_resultant_length


def _land(logits: torch.Tensor, points: torch.Tensor, kappa: float) -> Landscape:
    """One landscape per row of logits (B, K) over shared candidate points (K, D)."""
    tokens = torch.arange(points.shape[0]).expand(logits.shape[0], -1)
    return Landscape(tokens, logits, points.expand(logits.shape[0], -1, -1), kappa)


def _chains(land: Landscape, z0: torch.Tensor, settings: SamplerSettings, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    s = settings
    run = langevin_sample(z0, landscape_fn(land), s.steps, s.dt, s.gamma, s.temperature, gen)
    return run, draw(run.z, land, gen)


def test_energy_is_the_soft_minimum_and_its_gradient_is_exact():
    gen = torch.Generator().manual_seed(0)
    points = normalize(torch.randn(5, 7, generator=gen, dtype=torch.float64))
    logits = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    logits[1, 3:] = float("-inf")  # a row with fewer candidates, padded
    land = _land(logits, points, 4.0)
    z = normalize(torch.randn(3, 7, generator=gen, dtype=torch.float64))
    terms, grad = landscape_energy_and_grad(z, land)
    term_by_term = -torch.log(sum(torch.exp(logits[:, w] - 4.0 * (1 - z @ points[w])) for w in range(5)))
    torch.testing.assert_close(terms["total"], term_by_term)
    post = torch.softmax(posterior_logits(z, land), -1)
    entropy = -(post * post.clamp_min(1e-300).log()).sum(-1)
    torch.testing.assert_close(terms["total"], terms["token"] + terms["distance"] - entropy)  # U = E[energy] - H
    total = lambda x: landscape_energy_and_grad(x, land)[0]["total"].sum()  # noqa: E731
    assert torch.autograd.gradcheck(total, z.clone().requires_grad_())  # against finite differences
    x = z.clone().requires_grad_()
    total(x).backward()
    torch.testing.assert_close(grad, x.grad)


def test_filters_make_the_candidates():
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0], [0.0, 9.0, 8.9, 1.0]])
    land = landscape(filter_logits(logits, 0.5, top_k=3, top_p=0.8), torch.eye(4), 10.0)
    assert land.tokens[0, 0] == 0 and land.tokens[1].tolist()[:2] == [1, 2]
    assert torch.isinf(land.logits[0, 1:]).all()  # top-p left one candidate in the first row
    torch.testing.assert_close(land.logits[1, :2], torch.tensor([18.0, 17.8]))  # tempered
    gen = torch.Generator().manual_seed(0)
    picks = {tuple(draw(random_points(2, 4, gen), land, gen).tolist()) for _ in range(100)}
    assert {p[0] for p in picks} == {0} and {p[1] for p in picks} == {1, 2}
    greedy = landscape(filter_logits(logits, 0.0), torch.eye(4), 10.0)
    assert greedy.tokens.tolist() == [[0], [1]]


def test_on_s2_the_chain_samples_the_token_law_and_the_vmf_mixture():
    """T = 1: the drawn tokens follow softmax(l), and E[z] = sum_w p_w A_3(kappa) e_w."""
    points = torch.eye(3)
    logits = torch.tensor([[1.0, 0.0, -0.5]])
    kappa, chains = 3.0, 6000
    land = _land(logits.expand(chains, -1), points, kappa)
    settings = SamplerSettings(600, 0.05, 1.0, chain_temperature(1.0, 3), kappa)
    run, tokens = _chains(land, normalize(torch.tensor([[0.0, 0.0, 1.0]]).expand(chains, -1).clone()), settings)
    p = torch.softmax(logits[0], -1)
    share = torch.bincount(tokens, minlength=3).float() / chains
    assert (share - p).abs().max() < 4 * math.sqrt(0.25 / chains) + 0.01, (share, p)
    mean_z = p * mean_resultant_length(3, kappa)  # (3,) the mixture's mean, coordinate by coordinate
    assert (run.z.mean(0) - mean_z).abs().max() < 0.03, (run.z.mean(0), mean_z)


def test_in_d640_the_default_chain_forgets_its_start():
    """The shipped settings, started where a chain starts (near g(c), here far from the likely
    tokens): the drawn tokens follow p_E; a single basin gives the Bessel ratio of kappa."""
    gen = torch.Generator().manual_seed(1)
    d, chains, kappa = 640, 3000, 2.0 * 639**0.5
    points = normalize(torch.randn(8, d, generator=gen))
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -9.0]])
    settings = SamplerSettings.from_config(EBMConfig())
    assert settings.kappa == kappa
    land = _land(logits.expand(chains, -1), points, kappa)
    run, tokens = _chains(land, points[-1].expand(chains, -1).clone(), settings)
    p = torch.softmax(logits[0], -1)
    tv = 0.5 * (torch.bincount(tokens, minlength=8).float() / chains - p).abs().sum()
    assert tv < 0.06, tv  # sampling noise alone gives about 0.03 here
    one = _land(torch.zeros(chains, 1), points[:1], kappa)
    run, _ = _chains(one, random_points(chains, d, gen), settings, seed=2)
    assert abs(float((run.z @ points[0]).mean()) - mean_resultant_length(d, kappa)) < 0.01
