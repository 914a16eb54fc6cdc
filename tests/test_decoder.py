import torch

from ebm.decoder import balance_loss


def test_balance_loss_is_one_when_uniform():
    probs = torch.full((8, 4), 0.25)
    chosen = torch.tensor([[0, 1], [2, 3]] * 4)
    loss, load = balance_loss(probs, chosen, 4)
    assert abs(loss.item() - 1.0) < 1e-6 and torch.allclose(load, torch.full((4,), 0.25))
    skewed, _ = balance_loss(torch.tensor([[0.9, 0.1, 0, 0]] * 8), torch.tensor([[0, 1]] * 8), 4)
    assert skewed > 1.0


def test_the_grouped_dispatch_equals_each_rows_gated_sum_of_its_chosen_experts():
    """mix() against a row-by-row reference: o = sum over the top-A experts of gate * expert(x),
    gates renormalised over the chosen; every expert chosen by some rows and one by none."""
    from ebm.config import small_config
    from ebm.decoder import MoEDecoder

    torch.manual_seed(0)
    cfg = small_config(moe_experts=4, moe_active=2)
    dec = MoEDecoder(cfg).double()
    z, h = torch.randn(40, cfg.latent_dim).double(), torch.randn(40, cfg.latent_dim).double()
    with torch.no_grad():
        dec.router.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -1e3]))  # expert 3 is never chosen
    out = dec.mix(z, h).output
    x = dec.norm(torch.cat([z * cfg.latent_dim**0.5, h], -1))
    probs = torch.softmax(dec.router(x), -1)
    for n in range(40):
        gates, chosen = probs[n].topk(2)
        expected = sum(g / gates.sum() * dec.experts[int(e)](x[n]) for g, e in zip(gates, chosen))
        assert torch.allclose(out[n], expected, atol=1e-12)
    out.sum().backward()
    assert all(p.grad is not None for p in dec.experts[0].parameters()) and dec.experts[3][0].weight.grad is None
