import math

from trainer.schedule import Budget, lr_factor


def test_warmup_then_cosine_to_a_tenth():
    assert [lr_factor(s, 4, 100) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert math.isclose(lr_factor(4, 4, 100), 1.0)
    assert math.isclose(lr_factor(52, 4, 100), 0.55)  # half-way: 0.1 + 0.9 / 2
    assert math.isclose(lr_factor(100, 4, 100), 0.1) and math.isclose(lr_factor(500, 4, 100), 0.1)


def test_budget_ends_at_the_first_limit():
    assert Budget(100).planned_steps == 100 and Budget(100, max_steps=30).planned_steps == 30
    assert Budget(100, max_steps=300).planned_steps == 100
    timed = Budget(100, max_minutes=0.5)
    assert timed.allows(10, 29.9) and not timed.allows(10, 30.0) and not timed.allows(100, 0.0)


def test_evaluations_start_at_zero_and_come_early_then_every_interval():
    from trainer.schedule import is_eval_step

    assert [s for s in range(1200) if is_eval_step(s, 500, 10)] == [0, 10, 30, 70, 150, 310, 500, 1000]
    assert [s for s in range(120) if is_eval_step(s, 40, 0)] == [0, 40, 80]  # early evaluations off
