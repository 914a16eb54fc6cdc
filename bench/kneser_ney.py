"""Interpolated modified Kneser-Ney n-gram language model (Chen & Goodman, 1998), the count
baseline of bench/ppl.py. Plain Python dictionaries: about a minute for 1M training tokens.

    P_m(w | h) = max(c_m(h w) - D_m(c), 0) / c_m(h) + gamma_m(h) P_{m-1}(w | h')
    gamma_m(h) = (D_m1 N1(h .) + D_m2 N2(h .) + D_m3+ N3+(h .)) / c_m(h)

c_m is the raw count at the highest order and the continuation count N1+(. h w) below it;
P_0 is uniform over the vocabulary; a context never seen passes its lower order on unchanged.
Discounts per order from the count-of-counts n1..n4: Y = n1 / (n1 + 2 n2),
D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence


def discounts(counts: Counter) -> tuple[float, float, float]:
    """(D1, D2, D3+) from the count-of-counts of one order's counts."""
    n = Counter(c for c in counts.values() if c <= 4)  # n_i: how many n-grams occur exactly i times
    n1, n2, n3, n4 = (max(n[i], 1) for i in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2)
    return max(0.0, 1 - 2 * y * n2 / n1), max(0.0, 2 - 3 * y * n3 / n2), max(0.0, 3 - 4 * y * n4 / n3)


class KneserNey:
    def __init__(self, order: int, vocab_size: int, fixed_discounts: Sequence[tuple[float, float, float]] | None = None):
        if order < 1:
            raise ValueError("order must be at least 1")
        self.order, self.vocab_size = order, vocab_size
        self.fixed = fixed_discounts
        self.counts: list[Counter] = []  # per order m = 1..n: n-gram tuple -> (continuation) count
        self.context: list[dict] = []  # per order: context -> (total, N1, N2, N3+)
        self.d: list[tuple[float, float, float]] = []

    def fit(self, tokens: Sequence[int]) -> KneserNey:
        n = self.order
        top: Counter = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        by_order = {n: top}
        for m in range(n - 1, 0, -1):  # continuation counts: distinct left extensions of each (m)-gram
            by_order[m] = Counter(gram[1:] for gram in by_order[m + 1])
        for m in range(1, n + 1):
            counts = by_order[m]
            stats: dict = defaultdict(lambda: [0, 0, 0, 0])
            for gram, c in counts.items():
                s = stats[gram[:-1]]
                s[0] += c
                s[min(c, 3)] += 1
            self.counts.append(counts)
            self.context.append(dict(stats))
            self.d.append(self.fixed[m - 1] if self.fixed else discounts(counts))
        return self

    def prob(self, word: int, history: Sequence[int]) -> float:
        p = 1.0 / self.vocab_size
        for m in range(1, self.order + 1):
            h = tuple(history[len(history) - (m - 1) :]) if m > 1 else ()
            if m > 1 and len(h) < m - 1:
                break
            stats = self.context[m - 1].get(h)
            if stats is None:
                continue  # unseen context: the lower order stands
            total, n1, n2, n3 = stats
            d1, d2, d3 = self.d[m - 1]
            c = self.counts[m - 1].get((*h, word), 0)
            d = (0.0, d1, d2, d3)[min(c, 3)]
            p = max(c - d, 0.0) / total + (d1 * n1 + d2 * n2 + d3 * n3) / total * p
        return p
