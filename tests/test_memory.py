"""Memory splats (ebm.memory, trainer.corpus_memory): the mixture is a normalised distribution over the
whole vocabulary, retrieval and weights match a brute-force reference, the fit finds a known
optimum, and scoring a text with the memory agrees with a term-by-term reference."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import child_env, small_model

from ebm.geometry import normalize
from ebm.memory import Recall, SplatMemory, fit_mixture, memory_log_prob, mix
from trainer.corpus_memory import build_memory, contexts_of
from trainer.evaluation import score_text, sliding_windows


def brute_force(keys, tokens, q, n, kappa, vocab_size):
    """p_memory(w | q) for every token by an exact search in float64: (M, V)."""
    sims = q.double() @ keys.double().T  # (M, N)
    top, ids = sims.topk(n, -1)
    r = torch.softmax(kappa * top, -1)
    return torch.zeros(q.shape[0], vocab_size, dtype=torch.float64).scatter_add_(1, tokens[ids], r)


def test_the_mixture_is_exact_over_the_vocabulary_and_matches_a_brute_force_reference(gen):
    V, D, N, M = 50, 8, 300, 7
    keys, q = normalize(torch.randn(N, D, generator=gen)), normalize(torch.randn(M, D, generator=gen))
    tokens = torch.randint(0, V, (N,), generator=gen)
    memory = SplatMemory(keys, tokens, neighbours=16, kappa=7.0, weight=0.3)
    log_p_model = torch.log_softmax(torch.randn(M, V, generator=gen), -1)
    every = torch.arange(V).repeat(M)  # each context scored at every token
    log_p = memory.log_prob(q.repeat_interleave(V, 0), every, log_p_model.reshape(-1)).view(M, V)
    assert log_p.double().exp().sum(-1) == pytest.approx(torch.ones(M, dtype=torch.float64), abs=1e-5)
    reference = 0.7 * log_p_model.double().exp() + 0.3 * brute_force(keys, tokens, q, 16, 7.0, V)
    assert torch.allclose(log_p.double().exp(), reference, atol=1e-6)


def test_a_token_no_retrieved_splat_holds_gets_the_model_share_alone():
    recall = Recall(torch.tensor([[0.9, 0.1]]), torch.tensor([[3, 4]]))
    assert memory_log_prob(recall, torch.tensor([5]), 10.0).item() == -math.inf
    lp = torch.tensor([-2.0])
    assert mix(lp, torch.tensor([-math.inf]), 0.2).item() == pytest.approx(-2.0 + math.log(0.8))
    assert mix(lp, torch.tensor([-math.inf]), 0.0).item() == -2.0


def test_the_fit_finds_the_closed_form_weight(gen):
    """A uniform model over V tokens and one retrieved splat that holds the target for a share rho
    of contexts: the mean nll is -rho log((1 - l)/V + l) - (1 - rho) log((1 - l)/V), least at
    l* = (rho V - 1) / (V - 1)."""
    V, M, rho = 1000, 10_000, 0.3
    targets = torch.randint(0, V, (M,), generator=gen)
    right = torch.rand(M, generator=gen) < rho
    held = torch.where(right, targets, (targets + 1) % V)
    recall = Recall(torch.ones(M, 1), held[:, None])
    kappa, weight, nll = fit_mixture(recall, targets, torch.full((M,), -math.log(V)))
    assert weight == pytest.approx((right.float().mean().item() * V - 1) / (V - 1), abs=0.05)  # the grid's step
    share = right.float().mean().item()
    expected = -share * math.log((1 - weight) / V + weight) - (1 - share) * math.log((1 - weight) / V)
    assert nll == pytest.approx(expected, rel=1e-6)
    useless = Recall(torch.ones(M, 1), ((targets + 1) % V)[:, None])  # never right: the memory stays off
    assert fit_mixture(useless, targets, torch.full((M,), -math.log(V)))[1] == 0.0


def test_a_large_memory_searches_an_inverted_file_that_finds_the_nearest_keys(gen):
    D, N = 8, 120_000
    centres = normalize(torch.randn(64, D, generator=gen))
    keys = normalize(centres[torch.randint(0, 64, (N,), generator=gen)] + 0.1 * torch.randn(N, D, generator=gen))
    memory = SplatMemory(keys, torch.arange(N), neighbours=1)
    q = keys[:200] + 1e-3 * torch.randn(200, D, generator=gen)
    found = memory.recall(normalize(q)).sims[:, 0]
    exact = (normalize(q) @ keys.T).max(-1).values
    assert (found >= exact - 1e-4).float().mean() >= 0.95


def test_scoring_with_the_memory_matches_a_term_by_term_reference():
    """ebm-evaluate's protocol with memory splats written from one text and scored on another,
    against p_E over the whole vocabulary mixed with a brute-force memory."""
    model = small_model().eval()
    cfg = model.cfg
    rng = np.random.default_rng(0)
    train, held_out, text = (rng.integers(0, cfg.vocab_size, n) for n in (300, 200, 150))
    memory, fit = build_memory(model, train, held_out, stride=4, batch_size=8, show=False)
    assert len(memory) == len(train) - 1 and fit["held_out_nll_after"] <= fit["held_out_nll_before"]
    assert fit["search_recall"] == 1.0  # an exact search below IVF_FROM
    memory.weight, memory.kappa = 0.25, 9.0  # a weight the fit may not choose on random text
    result = score_text(model, text, stride=4, batch_size=8, memory=memory)

    keys, tokens, _ = contexts_of(model, train, 4, 8, "", show=False, scored=False)
    total = 0.0
    with torch.no_grad():
        for end, new in sliding_windows(len(text), cfg.context_global, 4):
            rows = torch.from_numpy(text[max(0, end - cfg.context_global - 1) : end][None].astype(np.int64))
            g, u, h = (x.reshape(-1, cfg.latent_dim) for x in model.contexts(rows[:, :-1], new))
            p_model = torch.softmax(model.energy_logits(g, u, h).double(), -1)
            p_memory = brute_force(keys, tokens, model.energy_direction(g, u), memory.neighbours, 9.0, cfg.vocab_size)
            p = 0.75 * p_model + 0.25 * p_memory
            assert torch.allclose(p.sum(-1), torch.ones(new, dtype=torch.float64))
            total -= p.gather(1, rows[0, -new:, None]).log().sum().item()
    assert result["nll_energy"] * result["tokens"] == pytest.approx(total, rel=1e-5)


def test_ebm_evaluate_mixes_in_memory_splats_from_a_corpus(full_run):
    ws, _ = full_run
    cmd = [sys.executable, "-m", "commands", "evaluate", "--checkpoint", str(ws / "checkpoints" / "full" / "latest.pt")]
    cmd += ["--data", "corpus.txt", "--split", "test", "--max-tokens", "256", "--samples", "0", "--json"]
    env = child_env(EBM_CACHE=str(ws / "cache"))
    plain, mixed = (
        json.loads(subprocess.run(cmd + extra, cwd=ws, env=env, capture_output=True, text=True, timeout=300, check=True).stdout)
        for extra in ([], ["--memory", "corpus.txt", "--memory-tokens", "2000"])
    )
    fit = mixed["memory"]
    assert plain["memory"] is None and fit["splats"] == 2000 and fit["held_out_nll_after"] <= fit["held_out_nll_before"]
    assert mixed["tokens"] == plain["tokens"] and mixed["ppl_decoder"] == pytest.approx(plain["ppl_decoder"])
    if fit["weight"] == 0:  # the memory did not help on held-out text: it stays off
        assert mixed["ppl_energy"] == pytest.approx(plain["ppl_energy"])


def in_batch_reference(keys, tokens, window, kappa):
    """log p_memory(target | c_i) row by row in float64, the other windows' rows as the memory."""
    out = []
    for i in range(keys.shape[0]):
        others = window != window[i]
        r = torch.softmax(kappa * keys[others].double() @ keys[i].double(), -1)
        mass = r[tokens[others] == tokens[i]].sum()
        out.append(torch.log(mass) if mass > 0 else torch.tensor(-math.inf, dtype=torch.float64))
    return torch.stack(out)


def test_in_batch_memory_matches_a_row_by_row_reference_and_its_gradient_is_finite(gen):
    from ebm.memory import in_batch_log_prob

    N, D, per_window = 24, 6, 4
    keys = normalize(torch.randn(N, D, generator=gen, dtype=torch.float64)).requires_grad_()
    tokens = torch.randint(0, 5, (N,), generator=gen)
    tokens[0] = 99  # a target no other window holds
    window = torch.arange(N) // per_window
    log_p = in_batch_log_prob(keys, tokens, window, 9.0)
    expected = in_batch_reference(keys.detach(), tokens, window, 9.0)
    assert log_p[0].item() == -math.inf and torch.isfinite(log_p[1:]).all()
    torch.testing.assert_close(log_p.detach(), expected)
    mix(torch.full((N,), -2.0, dtype=torch.float64), log_p, 0.3).sum().backward()
    assert torch.isfinite(keys.grad).all() and keys.grad.abs().sum() > 0


def test_the_in_batch_memory_gradient_matches_finite_differences(gen):
    from ebm.memory import in_batch_log_prob

    tokens = torch.tensor([1, 2, 1, 2, 2, 1])
    window = torch.tensor([0, 0, 1, 1, 2, 2])
    keys = normalize(torch.randn(6, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda k: in_batch_log_prob(k, tokens, window, 4.0), (keys,))


def test_training_with_the_in_batch_memory_adds_its_loss_and_pulls_shared_targets_together(gen):
    """The loss gains lambda_mem times -log((1 - lambda) p_E + lambda p_memory); one window alone
    has no memory, so its term is the NLL plus -log(1 - lambda); a descent step on the term raises
    the memory's probability of the targets."""
    from ebm import training_loss
    from ebm.memory import in_batch_log_prob
    from ebm.objective import memory_nll, target_nll, targets_of

    model = small_model(lambda_mem=1.0, mem_weight=0.25, mem_kappa=10.0, head_dtype="float32")
    cfg = model.cfg
    tokens = torch.randint(0, 4, (6, cfg.context_global + 1), generator=gen)  # few tokens: shared targets
    out = training_loss(model, tokens, torch.Generator().manual_seed(0))
    same_start = small_model(lambda_mem=0.0, mem_weight=0.25, mem_kappa=10.0, head_dtype="float32")
    plain = training_loss(same_start, tokens, torch.Generator().manual_seed(0))
    assert "mem_nll" not in plain.metrics
    assert out.loss.item() - plain.loss.item() == pytest.approx(out.metrics["mem_nll"].item(), rel=1e-5)
    t = targets_of(model, tokens)
    nll = target_nll(model, t)[0]
    one = t._replace(g=t.g[:4], u=t.u[:4], ids=t.ids[:4])
    assert memory_nll(model, one, nll[:4], 4).item() == pytest.approx(nll[:4].mean().item() - math.log(0.75), rel=1e-6)
    window = torch.arange(t.ids.shape[0]) // cfg.targets_per_window
    before = in_batch_log_prob(model.energy_direction(t.g, t.u), t.ids, window, 10.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    memory_nll(model, t, nll.detach(), cfg.targets_per_window).backward()
    opt.step()
    t2 = targets_of(model, tokens)
    after = in_batch_log_prob(model.energy_direction(t2.g, t2.u), t2.ids, window, 10.0)
    assert after.mean() > before.mean()
