from trainer.recovery import Action, Recovery


def test_skips_then_rolls_back_then_stops():
    r = Recovery(patience=3, max_rollbacks=2)
    actions = [r.on_non_finite(can_roll_back=True) for _ in range(9)]
    assert actions == [Action.SKIP, Action.SKIP, Action.ROLL_BACK] * 2 + [Action.SKIP, Action.SKIP, Action.STOP]
    assert r.rollbacks == 2


def test_a_finite_step_resets_the_streak_not_the_rollbacks():
    r = Recovery(patience=2, max_rollbacks=5)
    assert r.on_non_finite(True) is Action.SKIP
    r.on_finite()
    assert r.on_non_finite(True) is Action.SKIP and r.on_non_finite(True) is Action.ROLL_BACK
    r.on_finite()
    assert r.rollbacks == 1


def test_without_a_checkpoint_it_stops():
    r = Recovery(patience=1)
    assert r.on_non_finite(can_roll_back=False) is Action.STOP


def test_learning_rate_halves_per_rollback_since_the_checkpoint():
    """Rolling back reloads the checkpoint's lr; the count kept here says how often to halve it."""
    r = Recovery(patience=1, max_rollbacks=5)
    r.load_state_dict({"rollbacks": 1})  # resumed from a checkpoint written after one rollback
    r.on_non_finite(True)
    r.on_non_finite(True)
    assert r.rollbacks == 3 and r.lr_scale == 0.125
    assert r.state_dict() == {"rollbacks": 3}
