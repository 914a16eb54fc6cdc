import math

from trainer.schedule import Budget, lr_factor


def test_warmup_then_cosine_to_a_tenth_over_the_budget():
    assert [lr_factor(s, 4, 0.0) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert math.isclose(lr_factor(4, 4, 0.0), 1.0)
    assert math.isclose(lr_factor(52, 4, 0.5), 0.55)  # half-way: 0.1 + 0.9 / 2
    assert math.isclose(lr_factor(100, 4, 1.0), 0.1) and math.isclose(lr_factor(500, 4, 1.7), 0.1)
    assert lr_factor(0, 0, 0.0) == 1.0  # no warm-up


def test_the_schedule_spans_the_first_limit_of_steps_or_time():
    steps = Budget(1000, max_steps=200)
    assert steps.progress(100, 9e9) == 0.5  # no time limit: time spent does not count
    timed = Budget(1000, max_minutes=10)
    assert timed.progress(100, 300.0) == 0.5 and timed.progress(900, 300.0) == 0.9  # whichever is further
    assert timed.progress(2000, 0.0) == 1.0
    minutes = [lr_factor(s, 0, timed.progress(s, s * 6.0)) for s in (0, 50, 100)]  # 6 s per step: 100 steps in 10 min
    assert minutes[0] == 1.0 and math.isclose(minutes[1], 0.55) and math.isclose(minutes[2], 0.1)


def test_budget_ends_at_the_first_limit():
    assert Budget(100).planned_steps == 100 and Budget(100, max_steps=30).planned_steps == 30
    assert Budget(100, max_steps=300).planned_steps == 100
    timed = Budget(100, max_minutes=0.5)
    assert timed.allows(10, 29.9) and not timed.allows(10, 30.0) and not timed.allows(100, 0.0)


def test_evaluations_start_at_zero_and_come_early_then_every_interval():
    from trainer.schedule import is_eval_step

    assert [s for s in range(1200) if is_eval_step(s, 500, 10)] == [0, 10, 30, 70, 150, 310, 500, 1000]
    assert [s for s in range(120) if is_eval_step(s, 40, 0)] == [0, 40, 80]  # early evaluations off
