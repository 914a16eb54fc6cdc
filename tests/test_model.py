import torch

from ebm import EBMModel, small_config, token_logprobs


def _model(**changes):
    torch.manual_seed(0)
    return EBMModel(small_config(**changes))


def _window(cfg, batch=3, gen=None):
    L = cfg.context_global + cfg.seq_length + 1
    return torch.randint(cfg.vocab_size, (batch, L), generator=gen)


def test_state_dict_roundtrip_across_store_sizes(gen):
    model = _model()
    model.splats.spawn(torch.randn(7, model.cfg.latent_dim), step=3, phase=1)
    fresh = _model()
    fresh.load_state_dict(model.state_dict())
    assert fresh.splats.n == model.splats.n
    tokens = _window(model.cfg, batch=2, gen=gen)
    torch.testing.assert_close(token_logprobs(fresh, tokens), token_logprobs(model, tokens))
