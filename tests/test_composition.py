"""Sampling under composed energies (ebm.composition): on a 2-token span over a 5-word model
every sequence can be enumerated, so each method's law is checked against the stated target
pi(x) ~ q0(x) [hard constraints met] exp(-sum_soft lambda C(x))."""

import itertools

import pytest
import torch
from conftest import small_model

from ebm.composition import (
    COMPOSERS,
    Budget,
    ChainSettings,
    Problem,
    base_logprobs,
    compose,
    constraint_gradient,
    langevin_drafts,
    metropolis,
    move_state,
    next_logits,
    relaxed_energy,
    score,
    smc_particles,
    span_logprobs,
)
from ebm.constraints import Avoid, Keyword, RightContext
from ebm.geometry import normalize

ALL = torch.tensor(list(itertools.product(range(5), repeat=2)))  # (25, 2) every span


def toy_problem(dtype: torch.dtype = torch.float32) -> Problem:
    model = small_model(vocab_size=5, n_splats_init=8, max_splats=16, knn_k=4, curriculum_capacities=(8, 16, 16))
    model = model.to(dtype).eval()
    with torch.no_grad():  # a peaked, context-dependent law, as a trained model's would be
        model.log_prior.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5, -2.0]))
    emb = model.embeddings.detach()
    cons = (Keyword(((4,),), emb, label="four", weight=2.0), RightContext((1,), label="right"))
    return Problem(model, (0, 3), 2, cons, temperature=1.0, top_k=0)


@pytest.fixture(scope="module")
def toy():
    return toy_problem()


def log_q0(problem, tokens):
    """log q0 of each span (K, n), exactly, left to right."""
    prompt = torch.tensor(problem.prompt).expand(tokens.shape[0], -1)
    total = torch.zeros(tokens.shape[0])
    with torch.no_grad():
        for t in range(tokens.shape[1]):
            logp = base_logprobs(problem, next_logits(problem.model, torch.cat([prompt, tokens[:, :t]], 1)))
            total += logp.gather(-1, tokens[:, t : t + 1])[:, 0]
    return total


def target(problem):
    """pi over the 25 spans, enumerated."""
    log_pi = log_q0(problem, ALL) + score(problem, ALL).log_potential
    return torch.softmax(log_pi, 0)


def law(tokens, weights=None):
    """The (weighted) empirical law of spans (N, 2) over the 25 of ALL."""
    index = tokens[:, 0] * 5 + tokens[:, 1]
    w = torch.ones(len(index)) if weights is None else weights
    return torch.zeros(25).index_add_(0, index, w.float()) / w.sum()


def tv(p, q) -> float:
    return 0.5 * float((p - q).abs().sum())


def test_the_toy_target_is_not_trivial(toy):
    pi = target(toy)
    unconstrained = torch.exp(log_q0(toy, ALL))
    assert abs(float(unconstrained.sum()) - 1) < 1e-5
    assert float(pi[(ALL == 4).any(-1)].sum()) == pytest.approx(1.0)  # the keyword is hard
    assert tv(pi, unconstrained) > 0.3


def noise_floor(pi, draws: int, gen, quantile: float = 0.95) -> float:
    """A high percentile of TV(empirical law of `draws` exact draws from pi, pi)."""
    tvs = [tv(law(ALL[torch.multinomial(pi, draws, True, generator=gen)]), pi) for _ in range(200)]
    return float(torch.tensor(tvs).quantile(quantile))


@pytest.mark.parametrize(
    ("gradient_draw", "start"),
    [(0.0, None), (2.0, None), (2.0, (1, 4))],
    ids=["chain draw", "gradient draw", "every chain started at one span"],
)
def test_langevin_importance_weights_give_back_the_target(toy, gradient_draw, start):
    """Self-normalised weights of 12,000 chains against pi: TV within the noise of as many exact
    draws as the weights' effective sample size, while the chains' own (unweighted) tokens are
    far off it. The correction makes the law right whatever tilts the draw or wherever the chains
    start (a later round starts them where earlier rounds' weights pointed); how many chains it
    needs is the relaxation's quality (bench/constrained.py)."""
    gen = torch.Generator().manual_seed(0)
    chain = ChainSettings(chains=12000, steps=10, strength=1.0, gradient_draw=gradient_draw)
    starts = None if start is None else torch.tensor([start])
    with torch.no_grad():
        tokens, log_w, _, _ = langevin_drafts(toy, chain, gen, starts)
    w = torch.softmax(log_w, 0)
    ess = float(1 / (w * w).sum())
    pi = target(toy)
    weighted, proposal = tv(law(tokens, w), pi), tv(law(tokens), pi)
    floor = noise_floor(pi, max(int(ess), 1), gen)
    print(f"TV(weighted, pi) = {weighted:.3f} at ESS {ess:.0f} (noise floor {floor:.3f}); TV(unweighted, pi) = {proposal:.3f}")
    assert ess > 20
    assert weighted <= floor
    assert proposal > 0.3


def test_the_gradient_draw_reads_the_constraints_directional_derivative():
    """constraint_gradient against central differences of the constraints' summed relaxed energy
    along random directions, at random relaxed spans, in float64."""
    problem = toy_problem(torch.float64)
    gen = torch.Generator().manual_seed(4)
    z = normalize(torch.randn(3, problem.n, problem.model.cfg.latent_dim, generator=gen, dtype=torch.float64))
    grad = constraint_gradient(problem, z, strength=1.0)  # (3, n, D)

    def constraints_only(z):
        terms = relaxed_energy(problem, z, 1.0)
        return sum(terms[c.label] for c in problem.constraints)  # (3,)

    eps = 1e-4  # parts of the encoder run in float32: smaller steps read its rounding
    with torch.no_grad():
        for _ in range(3):
            v = torch.randn(z.shape, generator=gen, dtype=torch.float64)
            numeric = (constraints_only(z + eps * v) - constraints_only(z - eps * v)) / (2 * eps)
            assert torch.allclose((grad * v).sum((1, 2)), numeric, rtol=1e-4, atol=1e-6)
    assert float(grad.norm()) > 1e-3


def test_langevin_runs_rounds_until_its_budget_is_spent():
    """2 drafts a chain per round (a chain and its draw); rounds until the drafts budget is met,
    one round without a limit. With moves, rounds until half the budget, then each step of the
    moves counts one draft per moved chain."""
    model = small_model().eval()
    limits = (1, 8, 20)

    def drafts(chain: ChainSettings, budget: Budget) -> int:
        return compose(model, [1, 2], 3, [], "langevin", 1, budget, chain)[0].drafts

    rounds_only = ChainSettings(chains=4, steps=2, move_share=0.0)
    assert {limit: drafts(rounds_only, Budget(drafts=limit)) for limit in limits} == {1: 8, 8: 8, 20: 24}
    assert drafts(rounds_only, Budget()) == 8
    moved = ChainSettings(chains=4, steps=2, move_share=0.5, move_chains=4)
    # 20: rounds to 16 (>= 10), then 4 moves of 4 chains... stop at 20; 8 and 1: the first round spends it all
    assert {limit: drafts(moved, Budget(drafts=limit)) for limit in limits} == {1: 8, 8: 8, 20: 20}
    assert drafts(moved, Budget()) == 8  # no limit: one round, no moves
    out = compose(model, [1, 2], 3, [], "langevin", 1, Budget(drafts=40), moved)[0]
    assert out.drafts == 40 and out.accepted is not None and 0 < out.accepted <= 1


def move_kernel(problem, informed: bool) -> torch.Tensor:
    """The 25 x 25 transition matrix of one Metropolis move, from move_state's proposals and the
    acceptance rule min(1, pi(y) q(x | y) / (pi(x) q(y | x))) written out here."""
    with torch.no_grad():
        state = move_state(problem, ALL, informed)
    P = torch.zeros(25, 25, dtype=torch.float64)
    for i, x in enumerate(ALL.tolist()):
        for t, w in itertools.product(range(2), range(5)):
            q = float(state.proposal[i, t, w].exp())
            if q > 0:
                y = list(x)
                y[t] = w
                j = 5 * y[0] + y[1]
                log_ratio = state.log_pi[j] - state.log_pi[i] + state.proposal[j, t, x[t]] - state.proposal[i, t, w]
                accept = float(log_ratio.nan_to_num(float("-inf")).clamp(max=0).exp())
                P[i, j] += q * accept
                P[i, i] += q * (1 - accept)
    return P


def test_rounds_go_on_while_no_draft_meets_the_hard_constraints():
    """A keyword that is also avoided can never be met: the rounds take the whole budget (moves
    could not write it), and no moves run; a problem that is met moves after its rounds' share."""
    model = small_model().eval()
    emb = model.embeddings.detach()
    never = [Keyword(((7,),), emb, label="seven"), Avoid(((7,),), emb, label="no seven")]
    chain = ChainSettings(chains=4, steps=2, move_share=0.75)
    stuck = compose(model, [1, 2], 3, never, "langevin", 1, Budget(drafts=40), chain)[0]
    assert (stuck.drafts, stuck.accepted, stuck.met["seven"]) == (40, None, False)
    free = compose(model, [1, 2], 3, [], "langevin", 1, Budget(drafts=40), chain)[0]
    assert free.drafts == 40 and free.accepted is not None  # rounds to 16 (>= 10), then 24 one-draft moves


@pytest.mark.parametrize("informed", [False, True], ids=["plain", "gradient-informed"])
def test_metropolis_moves_are_in_detailed_balance_with_the_target(toy, informed):
    """Every state's proposal is a law over (position, token), and pi_x P(x, y) = pi_y P(y, x)
    for every pair of the enumerated toy: pi is the kernel's invariant law, exactly."""
    pi = target(toy).double()
    P = move_kernel(toy, informed)
    met = pi > 0
    assert torch.allclose(P[met].sum(-1), torch.ones(int(met.sum()), dtype=torch.float64), atol=1e-5)
    flow = pi[:, None] * P
    assert torch.allclose(flow, flow.T, atol=1e-7)
    assert torch.allclose(pi @ P, pi, atol=1e-6)
    assert float(P[met][:, met].diagonal().min()) < 0.9  # it moves


@pytest.mark.parametrize("informed", [False, True], ids=["plain", "gradient-informed"])
def test_metropolis_takes_the_kernels_steps(toy, informed):
    """The moves as metropolis runs them: 3,000 chains at each of three spans, one step each,
    land where the kernel's rows say, within the noise of as many draws from those rows."""
    gen = torch.Generator().manual_seed(5)
    P = move_kernel(toy, informed).float()
    starts = [4, 24, 19]  # (0, 4), (4, 4), (3, 4)
    chains = ALL[torch.tensor(starts)].repeat_interleave(3000, 0)
    moved, scores, steps, accepted = metropolis(toy, chains, gen, lambda taken: taken >= 1, informed)
    assert steps == 1 and bool(scores.met[:, 0].all())  # a move that drops the keyword is never accepted
    for i, row in enumerate(starts):
        landed = law(moved[3000 * i : 3000 * (i + 1)])
        draws = [torch.multinomial(P[row], 3000, True, generator=gen) for _ in range(100)]
        floor = max(tv(torch.bincount(d, minlength=25) / 3000, P[row]) for d in draws)  # the worst of 100
        assert tv(landed, P[row]) <= floor, (row, tv(landed, P[row]), floor)
        assert float(P[row, row]) < 0.95  # it moves


def test_metropolis_moves_head_for_the_target_from_one_span(toy):
    """Every chain started at one span: far from pi at first, much closer after 40 moves. Spans
    with the keyword at the front and at the back are joined only through (4, 4), 2% of pi, so
    the moves mix slowly here (measured: TV 0.05 after 300 moves; docs/design-notes.md, section 15)."""
    gen = torch.Generator().manual_seed(6)
    pi = target(toy)
    start = torch.tensor([[1, 4]]).expand(600, -1)
    moved, _, _, _ = metropolis(toy, start, gen, lambda taken: taken >= 40)
    print(f"TV to pi: start {tv(law(start), pi):.3f}, 40 moves {tv(law(moved), pi):.3f}")
    assert tv(law(start), pi) > 0.9
    assert tv(law(moved), pi) < 0.5


def test_one_pass_reads_q0_as_the_left_to_right_draw_does(toy):
    """span_logprobs reads every position's law in one pass over the span; the draw reads it one
    token at a time: the same log q0 of every span."""
    with torch.no_grad():
        logp, right = span_logprobs(toy, toy.model.embeddings[ALL])
    assert torch.allclose(logp.gather(-1, ALL[..., None])[..., 0].sum(-1), log_q0(toy, ALL), atol=1e-4)
    assert right is not None and right.shape == (25, 1, 5)


def test_smc_weighted_particles_give_back_the_target(toy):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        tokens, log_w = smc_particles(toy, 4000, gen)
        log_w = log_w + score(toy, tokens).log_potential
    w = torch.softmax(log_w, 0)
    pi = target(toy)
    assert tv(law(tokens, w), pi) <= noise_floor(pi, int(1 / (w * w).sum()), gen)


def test_rejection_samples_follow_the_target(toy):
    """200 accepted samples: TV to pi within the noise of 200 exact draws."""
    out = compose(toy.model, toy.prompt, 2, toy.constraints, "rejection", samples=200, budget=Budget(drafts=4096))
    assert all(s.met["four"] for s in out)
    pi = target(toy)
    assert tv(law(torch.tensor([s.tokens for s in out])), pi) <= noise_floor(pi, 200, torch.Generator().manual_seed(2))


def test_every_method_meets_an_avoid_constraint_and_is_deterministic_under_a_seed():
    model = small_model().eval()
    avoid = Avoid(((7,), (9,)), model.embeddings.detach(), label="no 7 9")
    for method in COMPOSERS:
        runs = [
            compose(
                model,
                [1, 2, 3],
                6,
                [avoid],
                method,
                samples=2,
                budget=Budget(drafts=16),
                chain=ChainSettings(chains=4, steps=5),
                seed=3,
            )
            for _ in range(2)
        ]
        assert [s.tokens for s in runs[0]] == [s.tokens for s in runs[1]], method
        if method != "direct":  # direct ignores constraints by design
            assert all(s.met["no 7 9"] and not {7, 9} & set(s.tokens) for s in runs[0]), method


def test_langevin_places_a_keyword_the_model_never_proposes():
    """A keyword far outside p_E's top-k: the chain places it, sampling from q0 at the same
    budget rarely does."""
    model = small_model().eval()
    prompt = [1, 2, 3]
    with torch.no_grad():
        rare = int(next_logits(model, torch.tensor([prompt]))[0].argmin())
        model.log_prior[rare] -= 8.0  # about e^-8 as likely as its neighbours wherever it stands
    kw = Keyword(((rare,),), model.embeddings.detach(), label="rare", weight=3.0)
    chain = ChainSettings(chains=8, steps=20, temperature=0.05, strength=4.0)
    lang = compose(model, prompt, 6, [kw], "langevin", samples=6, chain=chain, top_k=10)
    plain = compose(model, prompt, 6, [kw], "importance", samples=6, budget=Budget(drafts=16), top_k=10)
    assert sum(s.met["rare"] for s in lang) >= 5
    assert sum(s.met["rare"] for s in lang) > sum(s.met["rare"] for s in plain)
    assert set(lang[0].trace) == {"model", "rare", "total"} and len(lang[0].trace["total"]) == 21


def test_bad_problems_are_refused_with_what_to_do():
    model = small_model()
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        compose(model, [1], 4, method="magic")
    with pytest.raises(ValueError, match="does not fit the model's window"):
        Problem(model, (1,), 10, (RightContext(tuple(range(10))),))
    with pytest.raises(ValueError, match="at least one token"):
        Problem(model, (1,), 0)
    long = Problem(model, tuple(range(100)), 4)
    assert len(long.prompt) == model.cfg.context_global + 1 - 4  # only the last window conditions


def test_generate_takes_constraints_from_the_package():
    from ebm import Avoid as PackageAvoid
    from ebm import generate

    model = small_model().eval()
    ids, details = generate(
        model,
        [1, 2],
        5,
        constraints=[PackageAvoid(((3,),), model.embeddings.detach(), label="3")],
        method="smc",
        budget=Budget(drafts=8),
    )
    assert len(ids) == 5 and 3 not in ids and details[0].met == {"3": True}
