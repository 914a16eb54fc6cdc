import pytest
import torch
from conftest import random_windows, small_model

from ebm import token_logprobs, training_loss
from ebm.objective import host_metrics


@pytest.mark.parametrize("encoder", ["transformer", "multiscale"])
def test_forward_backward_reaches_every_part(gen, encoder):
    model = small_model(context_encoder=encoder)
    # The context summary reaches p_E through the splat query, which starts at zero; the
    # decoder, which reads it too, does not train it (ebm.objective.decoder_nll).
    torch.nn.init.normal_(model.query.weight, std=0.01, generator=gen)
    tokens = random_windows(model.cfg, batch=4, gen=gen)
    out = training_loss(model, tokens, gen)
    out.loss.backward()
    unused = {"log_strength"} if model.cfg.splat_term == "mixture" else set()  # gamma is the boost form's
    for name, param in model.named_parameters():
        if name in unused:
            assert param.grad is None, name
            continue
        grad = param.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    metrics = host_metrics(out.metrics)
    assert set(metrics) >= {"nll", "ppl", "dsm", "dec", "balance", "energy", "energy_splat", "energy_geo", "energy_comp"}
    assert 0.0 < metrics["dsm"] < 10


def test_training_nll_is_the_exact_scoring_nll(gen):
    """The blockwise training loss and the float32 scoring path compute the same p_E."""
    model = small_model(head_dtype="float32")
    tokens = random_windows(model.cfg, batch=4, gen=gen)
    out = training_loss(model, tokens, gen)
    exact = -token_logprobs(model, tokens).mean().item()
    assert abs(out.metrics["nll"].item() - exact) < 1e-5 * exact


def test_the_decoder_reads_the_energy_model_without_training_it(gen):
    """The decoder's loss trains the decoder alone: the embeddings, the token prior, the context
    encoder and the splats get exactly the gradient of the run without it (lambda_dec = 0)."""
    grads = {}
    for lambda_dec in (1.0, 0.0):
        model = small_model(lambda_dec=lambda_dec, head_dtype="float32")
        model.load_state_dict(small_model(head_dtype="float32").state_dict())  # the same start for both
        tokens = random_windows(model.cfg, batch=4, gen=torch.Generator().manual_seed(3))
        training_loss(model, tokens, torch.Generator().manual_seed(4)).loss.backward()
        grads[lambda_dec] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    with_dec, without = grads[1.0], grads[0.0]
    decoder = [n for n in with_dec if n.startswith("decoder.")]
    assert decoder and all(with_dec[n].abs().sum() > 0 for n in decoder if "router" not in n)
    for name in with_dec:
        if not name.startswith("decoder."):
            torch.testing.assert_close(with_dec[name], without[name], rtol=0, atol=0, msg=name)


def _targets(model, windows: int):
    from ebm.objective import targets_of

    return targets_of(model, random_windows(model.cfg, windows, torch.Generator().manual_seed(1)))


def test_thinning_by_one_keeps_every_target():
    from ebm.objective import thinned

    model = small_model()
    t = _targets(model, 2)
    assert thinned(t, 1, model.cfg.targets_per_window) is t


def test_thinning_keeps_one_target_in_k_and_every_position_across_the_windows():
    from ebm.objective import thinned

    model = small_model(splat_term="mixture")
    T, k = model.cfg.targets_per_window, 4
    t = _targets(model, 8)
    thin = thinned(t, k, T)
    assert thin.ids.shape[0] == t.ids.shape[0] // k
    rows = [int(torch.nonzero((t.g == g).all(-1))[0]) for g in thin.g]  # which rows were kept
    assert sorted({r % T for r in rows}) == list(range(T))  # every position, over 8 >= k windows
    assert all(sum(1 for r in rows if r // T == w) == T // k for w in range(8))  # T / k in each window
    kept = torch.tensor(rows)
    assert torch.equal(thin.ids, t.ids[kept]) and torch.equal(thin.retrieval.idx, t.retrieval.idx[kept])
    assert torch.equal(thin.retrieval.log_rest, t.retrieval.log_rest[kept])


def test_thinning_keeps_the_same_targets_however_the_batch_is_split():
    from ebm.objective import thinned
    from ebm.shard import Shard

    model = small_model()
    T, k = model.cfg.targets_per_window, 4
    t = _targets(model, 6)
    whole = thinned(t, k, T).ids
    third = t.ids.shape[0] // 3

    def rows(r: int):  # the rows of process r of 3
        part = slice(r * third, (r + 1) * third)
        return t._replace(g=t.g[part], u=t.u[part], h=t.h[part], ids=t.ids[part], retrieval=None)

    split = torch.cat([thinned(rows(r), k, T, Shard(rank=r, world=3)).ids for r in range(3)])
    assert torch.equal(split, whole)


def test_aux_stride_must_divide_the_targets_of_a_window():
    from ebm import small_config
    from ebm.config import ConfigError

    with pytest.raises(ConfigError, match="aux_stride"):
        small_config(aux_stride=3)  # 16 targets per window
