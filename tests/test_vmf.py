import math

import pytest
from scipy.special import ive

from ebm.vmf import kappa_for_mean_cosine, mean_resultant_length, mean_resultant_length_d3


@pytest.mark.parametrize("kappa", [0.1, 1.0, 5.0, 50.0, 300.0])
def test_d3_matches_closed_form(kappa):
    assert mean_resultant_length(3, kappa) == pytest.approx(mean_resultant_length_d3(kappa), rel=1e-10)


@pytest.mark.parametrize("d,kappa", [(16, 3.0), (64, 40.0), (640, 50.0), (640, 640.0), (640, 5000.0)])
def test_matches_scaled_bessel_ratio(d, kappa):
    expected = ive(d / 2, kappa) / ive(d / 2 - 1, kappa)
    assert mean_resultant_length(d, kappa) == pytest.approx(expected, rel=1e-8)


def test_high_dimension_is_nearly_uniform_at_default_kappa():
    # In d = 640, kappa = 50 gives a mean cosine of only ~ kappa / d.
    assert mean_resultant_length(640, 50.0) == pytest.approx(50 / 640, rel=0.05)


def test_inverse():
    kappa = kappa_for_mean_cosine(640, 0.6)
    assert mean_resultant_length(640, kappa) == pytest.approx(0.6, rel=1e-9)
    assert not math.isnan(kappa)
