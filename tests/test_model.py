import torch
from conftest import random_windows, small_model, switch_off_context

from ebm import token_logprobs


def test_state_dict_roundtrip_across_store_sizes(gen):
    model = small_model()
    model.splats.spawn(torch.randn(7, model.cfg.splat_dim), step=3, phase=1)
    fresh = small_model()
    fresh.load_state_dict(model.state_dict())
    assert fresh.splats.n == model.splats.n
    tokens = random_windows(model.cfg, batch=2, gen=gen)
    torch.testing.assert_close(token_logprobs(fresh, tokens), token_logprobs(model, tokens))


def test_the_token_prior_is_the_add_one_unigram_and_enters_p_e_as_a_log_bias():
    from ebm import token_logprobs
    from ebm.config import small_config
    from ebm.model import EBMModel

    cfg = small_config(splat_term="token")  # a context-free splat term: p_E(w) is one law once the context is off
    gen = torch.Generator().manual_seed(0)
    freq = torch.randint(0, 1000, (cfg.vocab_size,), generator=gen) * (torch.arange(cfg.vocab_size) < 40)
    model = EBMModel(cfg, token_freq=freq)
    prior = (freq + 1.0) / (freq + 1.0).sum()
    torch.testing.assert_close(model.log_prior.exp().double(), prior.double(), rtol=1e-5, atol=0)
    switch_off_context(model)
    with torch.no_grad():  # context terms off: p_E(w) is pi_w exp(-E_splat(e_w) / T), normalised
        expected = torch.log_softmax(prior.log() - model.vocab_splat_energy().double() / cfg.vocab_temperature, -1)
    tokens = torch.randint(cfg.vocab_size, (2, cfg.context_global + 1), generator=gen)
    logp = token_logprobs(model, tokens)
    torch.testing.assert_close(logp, expected.float()[tokens[:, -cfg.targets_per_window :]], rtol=1e-4, atol=1e-4)


def test_checkpoints_from_before_the_token_prior_load_with_a_uniform_one():
    from ebm.config import small_config
    from ebm.model import EBMModel

    cfg = small_config()
    old = EBMModel(cfg).state_dict()
    del old["log_prior"]
    model = EBMModel(cfg, token_freq=torch.arange(cfg.vocab_size).float())
    model.load_state_dict(old)
    assert torch.equal(model.log_prior, torch.zeros(cfg.vocab_size))
