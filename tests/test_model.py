import torch
from conftest import random_windows, small_model

from ebm import token_logprobs


def test_state_dict_roundtrip_across_store_sizes(gen):
    model = small_model()
    model.splats.spawn(torch.randn(7, model.cfg.latent_dim), step=3, phase=1)
    fresh = small_model()
    fresh.load_state_dict(model.state_dict())
    assert fresh.splats.n == model.splats.n
    tokens = random_windows(model.cfg, batch=2, gen=gen)
    torch.testing.assert_close(token_logprobs(fresh, tokens), token_logprobs(model, tokens))
