from trainer.data import Windows


def test_windows_tile_targets_once():
    import numpy as np

    tokens = np.arange(100)
    w = Windows(tokens, history=5, targets=4)
    batch = w.batch(np.arange(len(w)))
    assert batch.shape == (len(w), 10)
    targets = batch[:, -4:].reshape(-1)
    assert len(set(targets.tolist())) == len(targets)  # no target twice
    assert (batch[:, 1:] - batch[:, :-1] == 1).all()  # contiguous text
    assert list(w.epoch_order(0, 1)) == list(w.epoch_order(0, 1))
