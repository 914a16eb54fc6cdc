import pytest
import torch
from conftest import random_windows, small_model

from ebm.context import causal_window_mean


@pytest.mark.parametrize("encoder", ["transformer", "multiscale"])
def test_context_is_causal(gen, encoder):
    model = small_model(context_encoder=encoder)
    cfg = model.cfg
    tokens = random_windows(cfg, gen=gen)
    T = cfg.seq_length
    base = model.contexts(tokens, T)
    t = 5  # change every token after position L - T + t
    cut = tokens.shape[1] - T + t + 1
    changed = tokens.clone()
    changed[:, cut:] = torch.randint(cfg.vocab_size, changed[:, cut:].shape, generator=gen)
    after = model.contexts(changed, T)
    for a, b in zip(base, after):
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
        assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_causal_window_mean_reference(gen):
    x = torch.randn(2, 9, 3, generator=gen, dtype=torch.float64)
    out = causal_window_mean(x, 4, 5)
    for i, p in enumerate(range(4, 9)):
        torch.testing.assert_close(out[:, i], x[:, max(0, p - 3) : p + 1].mean(1))
