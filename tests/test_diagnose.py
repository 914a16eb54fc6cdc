import numpy as np

from trainer.diagnosis import histogram_text


def test_histogram_labels_tell_close_bins_apart():
    values = 2.0001 + 2e-5 * np.random.default_rng(0).standard_normal(500)  # a store whose kappa barely moved
    labels = [line.split("..") for line in histogram_text(values, bins=4).splitlines()]
    starts = [float(lo) for lo, _ in labels]
    assert len(set(starts)) == 4 and starts == sorted(starts)
    assert sum(int(line.split()[-1]) for line in histogram_text(values).splitlines()) == 500


def test_the_coverage_recommendation_quotes_the_coverage_as_the_report_does():
    import numpy as np

    from trainer.diagnosis import recommendations

    arrays = {"kappa": np.full(10, 5.0), "usage": np.ones(10)}
    recs = recommendations(arrays, {"max_kappa": 50.0, "min_kappa": 1.0}, 0.003, None, "falling")
    assert any("coverage 0.3% is below" in r for r in recs), recs
