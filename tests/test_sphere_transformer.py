import pytest
import torch
from conftest import random_windows, small_model

from ebm import EBMConfig, small_config
from ebm.sphere_transformer import SphereLinear, head_spans, rotary, span_mask


def test_span_mask_against_a_loop():
    spans, L = [1, 3, 8], 7
    mask = span_mask(spans, L)
    for h, span in enumerate(spans):
        for i in range(L):
            for j in range(L):
                assert mask[h, i, j] == (j <= i and i - j < span)


def test_heads_split_into_local_medium_and_global_groups():
    cfg = small_config(context_heads=6, latent_dim=36)
    assert head_spans(cfg) == [4, 4, 8, 8, 16, 16]


def test_rotary_scores_depend_on_the_offset_only(gen):
    q, k = torch.randn(2, 1, 1, 1, 8, generator=gen, dtype=torch.float64)
    positions = torch.zeros(1, 1, 20, 8, dtype=torch.float64)

    def score(i: int, j: int) -> torch.Tensor:
        qs, ks = positions.clone(), positions.clone()
        qs[..., i, :], ks[..., j, :] = q, k
        return (rotary(qs)[..., i, :] * rotary(ks)[..., j, :]).sum()

    torch.testing.assert_close(score(5, 2), score(15, 12))
    torch.testing.assert_close(score(3, 3), (q * k).sum())  # offset 0: no rotation between them
    assert not torch.isclose(score(5, 2), score(5, 4))


def test_hidden_states_and_weights_are_on_the_sphere(gen):
    model = small_model()
    ctx = model.contexts(random_windows(model.cfg, gen=gen), model.cfg.seq_length)
    torch.testing.assert_close(ctx.g.norm(dim=-1), torch.ones(ctx.g.shape[:2]))
    into, out_of = SphereLinear(5, 3, into_model=True), SphereLinear(5, 3)
    read_into, read_out_of = into(torch.eye(5)).T, out_of(torch.eye(5)).T  # the weights as read, (3, 5)
    torch.testing.assert_close(read_into.norm(dim=0), torch.ones(5))  # along the output (model) dimension
    torch.testing.assert_close(read_out_of.norm(dim=1), torch.ones(3))  # along the input (model) dimension


def test_one_block_sees_only_its_span(gen):
    """Every head local with a 3-token span and one block: position p reads p-2..p alone."""
    model = small_model(context_layers=1, context_local=3, context_medium=3, context_global=16)
    model.context.backbone.spans = [3] * model.cfg.context_heads
    tokens = random_windows(model.cfg, gen=gen)
    base = model.contexts(tokens, 16).g
    changed = tokens.clone()
    changed[:, 4] = (changed[:, 4] + 1) % model.cfg.vocab_size
    after = model.contexts(changed, 16).g
    moved = (base - after).abs().amax(dim=(0, 2)) > 1e-6  # (T,) positions whose context changed
    window_start = tokens.shape[1] - 16
    assert moved.nonzero().flatten().tolist() == [p - window_start for p in (4, 5, 6) if p >= window_start]


@pytest.mark.parametrize("saved", [{}, {"context_encoder": "transformer"}])
def test_a_saved_config_without_the_encoder_field_rebuilds_the_multiscale_encoder(saved):
    data = small_config().to_dict()
    del data["context_encoder"]
    expected = saved.get("context_encoder", "multiscale")
    assert EBMConfig.from_saved({**data, **saved}).context_encoder == expected
    assert EBMConfig.from_dict(data).context_encoder == "transformer"  # a user's config: the default
