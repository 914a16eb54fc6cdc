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


def test_by_default_every_position_of_a_window_is_a_target():
    import numpy as np

    from ebm.config import ConfigError, small_config
    from trainer.data import windows_for

    every = small_config(seq_length=0)
    w = windows_for(np.arange(1000), every)
    assert every.targets_per_window == every.context_global and w.length == every.context_global + 1
    targets = w.batch(np.arange(len(w)))[:, -every.targets_per_window :].reshape(-1)
    assert len(targets) == len(set(targets.tolist())) > 1000 - 2 * every.context_global  # each token once, almost all
    tail = windows_for(np.arange(1000), small_config(seq_length=4))
    assert tail.length == every.context_global + 1 and tail.targets == 4  # same window, only its last 4 scored
    import pytest

    with pytest.raises(ConfigError, match="exceeds the window"):
        small_config(seq_length=every.context_global + 1)
