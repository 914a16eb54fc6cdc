"""Constraint energies (ebm.constraints): values against closed forms, Riemannian gradients
against finite differences along geodesics, verdicts on token sequences, and text parsing."""

import math

import pytest
import torch
from conftest import small_model

from ebm.composition import Problem, chain_energy, relaxed_energy
from ebm.constraints import (
    Avoid,
    Keyword,
    RightContext,
    SpanView,
    Topic,
    contains,
    from_text,
    half_sq_dist,
    riemannian_grad,
    soft_min,
    word_forms,
)
from ebm.geometry import dist, exp_map, normalize, project


def _points(gen, K=3, n=5, D=8):
    return normalize(torch.randn(K, n, D, generator=gen, dtype=torch.float64))


def _emb(gen, V=11, D=8):
    return normalize(torch.randn(V, D, generator=gen, dtype=torch.float64))


def _geodesic_fd(energy, z, v, eps=1e-5):
    """d/dt energy(exp_z(t v)) at t = 0 by central differences, per row (K,)."""
    return (energy(exp_map(z, eps * v)) - energy(exp_map(z, -eps * v))) / (2 * eps)


def _check_gradient(constraint, gen, z=None, right=None):
    emb = constraint.embeddings if hasattr(constraint, "embeddings") else None
    z = _points(gen, D=emb.shape[1]) if z is None else z
    v = project(z, torch.randn(z.shape, generator=gen, dtype=z.dtype))
    value, grad = riemannian_grad(constraint, SpanView(z, right))
    assert torch.allclose(grad, project(z, grad), atol=1e-12), "the gradient must be tangent"
    fd = _geodesic_fd(lambda p: constraint.energy(SpanView(p, right)), z, v)
    assert torch.allclose((grad * v).sum((1, 2)), fd, rtol=1e-5, atol=1e-7)
    return value


def test_half_sq_dist_is_half_the_squared_geodesic_distance_and_smooth_at_zero(gen):
    x, y = _points(gen)[0], _points(gen)[0]
    assert torch.allclose(half_sq_dist(x, y), dist(x, y) ** 2 / 2)
    z = x.clone().requires_grad_(True)
    half_sq_dist(z, x).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().max() < 1e-5  # minimum at z = x: zero gradient, no NaN


def test_soft_min_is_within_t_log_n_below_the_min():
    x = torch.tensor([[3.0, 1.0, 2.0]])
    s = soft_min(x, 0.1)
    assert 1.0 - 0.1 * math.log(3) <= s <= 1.0
    assert torch.allclose(soft_min(x, 1e-4), torch.tensor([1.0]), atol=1e-3)


def test_keyword_energy_is_kappa_times_the_closest_position_and_its_gradient_matches(gen):
    emb = _emb(gen)
    kw = Keyword(((4,),), emb, weight=2.0, kappa=3.0, temperature=1e-3)
    z = _points(gen)
    z[1, 3] = emb[4]  # row 1 holds the keyword exactly at position 3
    e = _check_gradient(kw, gen, z)
    closest = (dist(z, emb[4].expand_as(z)) ** 2 / 2).min(-1).values
    assert torch.allclose(e, 2.0 * 3.0 * closest, atol=2 * 3 * 1e-3 * math.log(5))
    assert abs(float(e[1])) < 0.01


def test_a_phrase_keyword_sums_distances_over_consecutive_positions(gen):
    emb = _emb(gen)
    kw = Keyword(((2, 7),), emb, kappa=1.0, temperature=1e-4)
    z = _points(gen)
    z[0, 1], z[0, 2] = emb[2], emb[7]  # in order: found
    z[2, 1], z[2, 2] = emb[7], emb[2]  # reversed: not the phrase
    e = _check_gradient(kw, gen, z)
    assert abs(float(e[0])) < 1e-2 and float(e[2]) > 0.1
    with pytest.raises(ValueError, match="longer than the span"):
        Keyword(((1, 2, 3, 4, 5, 6),), emb).energy(SpanView(z))


def test_avoid_energy_is_a_sum_of_vmf_bumps_and_its_gradient_matches(gen):
    emb = _emb(gen)
    avoid = Avoid(((3,), (5, 6)), emb, kappa=4.0)
    z = _points(gen)
    e = _check_gradient(avoid, gen, z)
    cos = torch.einsum("knd,ad->kna", z, emb[[3, 5, 6]])
    assert torch.allclose(e, torch.exp(4.0 * (cos - 1)).sum((1, 2)))


def test_topic_energy_and_gradient(gen):
    emb = _emb(gen)
    topic = Topic(emb[[1, 2]], emb, temperature=0.05)
    z = _points(gen)
    z[0] = emb[1]  # the whole span on a topic direction: energy ~ 0
    e = _check_gradient(topic, gen, z)
    assert float(e[0]) < 0.05 and (e[1:] > 0.3).all()


def test_right_context_energy_is_the_nll_of_its_tokens(gen):
    logits = torch.randn(2, 3, 11, generator=gen, dtype=torch.float64)
    rc = RightContext((4, 0, 9), weight=2.0)
    e = rc.energy(SpanView(_points(gen)[:2], logits))
    logp = torch.log_softmax(logits, -1)
    assert torch.allclose(e, -2.0 * (logp[:, 0, 4] + logp[:, 1, 0] + logp[:, 2, 9]))


def test_relaxed_energy_gradient_through_the_model_matches_finite_differences(gen):
    """The whole chain energy, right context included, differentiated through the encoder."""
    model = small_model().double().eval()
    emb = model.embeddings.detach()
    cons = (Keyword(((5,),), emb, weight=1.0), RightContext((1, 2)), Topic(emb[[3]], emb))
    problem = Problem(model, (7, 8, 9), 4, cons, temperature=1.0, top_k=0)
    z = normalize(torch.randn(2, 4, model.cfg.latent_dim, generator=gen, dtype=torch.float64))
    v = project(z, torch.randn(z.shape, generator=gen, dtype=torch.float64))
    terms, grad = chain_energy(problem, 2.0)(z, 0)
    assert set(terms) == {"model", "keyword", "right_context", "topic", "total"}
    dof = model.cfg.latent_dim - 1
    # the model's logits are float32 whatever the input dtype: a wider step keeps rounding out
    fd = _geodesic_fd(lambda p: relaxed_energy(problem, p, 2.0)["total"].detach(), z, v, eps=1e-3)
    assert torch.allclose((project(z, grad) * dof * v).sum((1, 2)), fd, rtol=1e-3, atol=1e-4)


def test_verdicts_on_token_sequences():
    emb = torch.eye(10)
    tokens = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]])
    assert contains(tokens, (2, 3)).tolist() == [True, False]
    kw = Keyword(((9,), (2, 3)), emb)
    assert kw.met(tokens, torch.zeros(2)).tolist() == [True, False]
    avoid = Avoid(((3, 2),), emb)
    assert avoid.met(tokens, torch.zeros(2)).tolist() == [True, False]
    assert avoid.banned_next([5, 3]) == [2] and avoid.banned_next([5, 4]) == []
    topic = Topic(emb[[7]], emb, threshold=0.5)
    assert topic.met(torch.tensor([[7, 1], [1, 2]]), torch.zeros(2)).tolist() == [True, False]


class _Chars:
    """A character tokenizer over a tiny alphabet: anything else cannot be written back."""

    alphabet = " abcdefghij"

    def encode(self, text):
        return [self.alphabet.index(c) if c in self.alphabet else 0 for c in text]

    def decode(self, ids):
        return "".join(self.alphabet[i] for i in ids)


def test_constraints_from_text_and_their_errors():
    tok, emb = _Chars(), torch.eye(11)
    assert word_forms("bad", tok.encode, tok.decode) == ((0, 2, 1, 4), (2, 1, 4))
    cons = from_text(tok.encode, tok.decode, emb, ["bad"], ["ace"], " cab", ["jig"], weights={"keyword": 3})
    assert [c.kind for c in cons] == ["keyword", "avoid", "right_context", "topic"]
    assert cons[0].weight == 3 and cons[1].weight == 1
    with pytest.raises(ValueError, match="empty word"):
        from_text(tok.encode, tok.decode, emb, ["bad", " "])
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        from_text(tok.encode, tok.decode, emb, ["xyz"])
    with pytest.raises(ValueError, match="unknown constraint 'keywords'"):
        from_text(tok.encode, tok.decode, emb, weights={"keywords": 1.0})
