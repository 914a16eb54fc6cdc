import torch

from ebm.decoder import balance_loss


def test_balance_loss_is_one_when_uniform():
    probs = torch.full((8, 4), 0.25)
    chosen = torch.tensor([[0, 1], [2, 3]] * 4)
    loss, load = balance_loss(probs, chosen, 4)
    assert abs(loss.item() - 1.0) < 1e-6 and torch.allclose(load, torch.full((4,), 0.25))
    skewed, _ = balance_loss(torch.tensor([[0.9, 0.1, 0, 0]] * 8), torch.tensor([[0, 1]] * 8), 4)
    assert skewed > 1.0
