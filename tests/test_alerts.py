import torch

from trainer import alerts


def test_energy_rising_fires_on_trend_not_noise():
    gen = torch.Generator().manual_seed(0)
    noise = (torch.randn(200, generator=gen) * 0.5).tolist()
    assert alerts.energy_rising([1.0 + n for n in noise]) is None
    rising = [1.0 + 0.01 * i + n * 0.1 for i, n in enumerate(noise)]
    alert = alerts.energy_rising(rising)
    assert alert is not None and alert.rule == "energy_rising" and "rose" in alert.message


def test_soc_too_fast():
    assert alerts.soc_too_fast([True] * 9 + [False]) is not None
    assert alerts.soc_too_fast([True, False] * 5) is None
    assert alerts.soc_too_fast([True] * 5) is None  # too few checks to judge


def test_validation_worse():
    assert alerts.validation_worse([100, 80, 70, 75, 76]) is not None
    assert alerts.validation_worse([100, 80, 70, 69, 71]) is None


def test_plateau_only_when_far_from_target():
    flat_high = [5.0] * 500
    assert alerts.plateau(flat_high, target=2.0) is not None
    assert alerts.plateau([2.1] * 500, target=2.0) is None
    assert alerts.plateau([5.0 - i * 0.004 for i in range(500)], target=2.0) is None


def test_non_finite():
    assert alerts.non_finite({"loss": float("nan"), "nll": 1.0}).rule == "nan"
    assert alerts.non_finite({"loss": 1.0}) is None


def test_one_trend_vocabulary():
    assert alerts.describe_trend([10 - 0.01 * i for i in range(200)]).word == "falling"
    assert alerts.describe_trend([1.0, 2.0] * 100).word == "flat"
    rising = alerts.describe_trend([0.5 * i for i in range(50)])
    assert rising.word == "rising" and abs(rising.per_100 - 50.0) < 1e-9 and "per 100 steps" in str(rising)
    assert alerts.describe_trend([1.0] * 5).word == "too few points"
    # a slope at t = -2.5 is not called flat
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(200, generator=gen).tolist()
    for scale in (0.0005, 0.001, 0.002, 0.003):
        weak = alerts.describe_trend([v - scale * i for i, v in enumerate(noise)])
        if -3 <= weak.t < -2:
            assert weak.word == "probably falling"
            break
    else:
        raise AssertionError("no slope landed at t in [-3, -2)")
