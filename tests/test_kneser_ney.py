"""The Kneser-Ney baseline against hand-computed probabilities and normalisation."""

import math

import pytest

from bench.kneser_ney import KneserNey, discounts


def test_discounts_follow_chen_goodman():
    from collections import Counter

    counts = Counter({i: 1 for i in range(8)} | {10 + i: 2 for i in range(4)} | {20 + i: 3 for i in range(2)} | {30: 4, 31: 9})
    y = 8 / (8 + 2 * 4)
    assert discounts(counts) == pytest.approx((1 - 2 * y * 4 / 8, 2 - 3 * y * 2 / 4, 3 - 4 * y * 1 / 2))


def test_bigram_probability_by_hand():
    # corpus a b a c a b (ids a=0, b=1, c=2), vocabulary 4 (one unseen word), fixed discounts
    model = KneserNey(2, 4, fixed_discounts=[(0.5, 0.5, 0.5), (0.5, 0.5, 0.5)]).fit([0, 1, 0, 2, 0, 1])
    # unigram continuation counts: b after {a} -> 1, a after {b, c} -> 2, c after {a} -> 1; total 4, 3 types
    # P1(b) = (1 - 0.5)/4 + (0.5 * 3)/4 * 1/4
    p1_b = 0.5 / 4 + 1.5 / 4 * 0.25
    # bigram counts after a: b 2, c 1; total 3, N1 = 1, N2 = 1
    p2_b = (2 - 0.5) / 3 + (0.5 * 1 + 0.5 * 1) / 3 * p1_b
    assert model.prob(1, [0]) == pytest.approx(p2_b)
    assert model.prob(3, [0]) == pytest.approx(1.0 / 3 * (0.5 * 3 / 4 * 0.25))  # unseen word: all back-off mass
    assert model.prob(1, [3]) == pytest.approx(p1_b)  # unseen history: the unigram level


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distribution_sums_to_one(order):
    import random

    rng = random.Random(order)
    tokens = [rng.choice(range(12)) if rng.random() < 0.7 else 0 for _ in range(500)]
    model = KneserNey(order, 15).fit(tokens)
    for history in ([0, 1, 2], [5, 5, 5], [14, 13, 12], tokens[-3:]):
        assert math.fsum(model.prob(w, history) for w in range(15)) == pytest.approx(1.0, abs=1e-9)
