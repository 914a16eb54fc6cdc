import pytest
import torch
from conftest import random_windows, small_model

from ebm import token_logprobs, training_loss
from ebm.objective import host_metrics


@pytest.mark.parametrize("encoder", ["transformer", "multiscale"])
def test_forward_backward_reaches_every_part(gen, encoder):
    model = small_model(context_encoder=encoder)
    tokens = random_windows(model.cfg, batch=4, gen=gen)
    out = training_loss(model, tokens, gen)
    out.loss.backward()
    for name, param in model.named_parameters():
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
