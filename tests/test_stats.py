"""giftlab.stats: one bootstrap rule for every interval, checked against a straightforward reference."""

from __future__ import annotations

import numpy as np
import pytest

from giftlab.stats import bootstrap_ci, paired_difference, ratio_bootstrap_ci


def reference_interval(statistic, n_units, n_resamples, seed, alpha=0.05):
    """The documented rule, written out: numpy's default_rng(seed) draws n_units indices with replacement per
    resample, the interval is numpy.quantile (linear) at alpha/2 and 1 - alpha/2."""
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n_units, size=n_units)
        stats.append(statistic(idx))
    return tuple(float(q) for q in np.quantile(np.array(stats), [alpha / 2, 1 - alpha / 2]))


def test_mean_ratio_and_paired_intervals_follow_the_one_rule():
    rng = np.random.default_rng(7)
    values = rng.random(37)
    # drawing all resamples at once (as giftlab.stats does) equals drawing them one by one
    assert bootstrap_ci(values, 500, seed=3) == pytest.approx(
        reference_interval(lambda i: values[i].mean(), 37, 500, 3), abs=1e-15)
    sums, counts = rng.random(20) * 10, rng.integers(1, 9, 20).astype(float)
    assert ratio_bootstrap_ci(sums, counts, 400, seed=5) == pytest.approx(
        reference_interval(lambda i: sums[i].sum() / counts[i].sum(), 20, 400, 5), abs=1e-15)
    pre = {f"p{i}": float(v) for i, v in enumerate(rng.random(30))}
    post = {k: min(1.0, v + 0.1 * (i % 3)) for i, (k, v) in enumerate(pre.items())}
    diffs = np.array([post[k] - pre[k] for k in sorted(pre)])
    got = paired_difference(pre, post, 300, seed=2)
    assert got["gain"] == pytest.approx(diffs.mean())
    assert tuple(got["gain_ci95"]) == pytest.approx(reference_interval(lambda i: diffs[i].mean(), 30, 300, 2),
                                                    abs=1e-15)


def test_degenerate_inputs():
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)
    assert all(np.isnan(ratio_bootstrap_ci([1.0], [2.0], 100)))
    with pytest.raises(ValueError, match="share no problem"):
        paired_difference({"a": 1.0}, {"b": 1.0})
