"""giftlab.stats: one bootstrap rule for every interval, checked against a straightforward reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from giftlab.stats import bootstrap_ci, paired_difference, paired_ratio_bootstrap_ci, ratio_bootstrap_ci


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


def test_paired_ratio_interval_follows_the_one_rule_and_cancels_what_the_examples_share():
    rng = np.random.default_rng(11)
    counts = rng.integers(1, 30, 40).astype(float)
    difficulty = rng.random(40) * 5  # per-example level both runs share (some examples are far harder)
    a = (difficulty + 0.10 + 0.02 * rng.standard_normal(40)) * counts
    b = (difficulty + 0.02 * rng.standard_normal(40)) * counts
    got = paired_ratio_bootstrap_ci(a, counts, b, counts, 500, seed=4)
    assert got == pytest.approx(reference_interval(
        lambda i: a[i].sum() / counts[i].sum() - b[i].sum() / counts[i].sum(), 40, 500, 4), abs=1e-15)
    assert got[0] > 0.05 and got[1] < 0.15  # the 0.10 shift, found
    lo_a, hi_a = ratio_bootstrap_ci(a, counts, 500, seed=4)
    lo_b, hi_b = ratio_bootstrap_ci(b, counts, 500, seed=4)
    combined = math.hypot((hi_a - lo_a) / 2, (hi_b - lo_b) / 2)
    assert combined > 0.15  # each run's own interval is dominated by the shared difficulty: unpaired, lost
    with pytest.raises(ValueError, match="same units"):
        paired_ratio_bootstrap_ci(a, counts, b[:-1], counts[:-1])
    assert all(np.isnan(paired_ratio_bootstrap_ci([1.0], [2.0], [1.0], [2.0], 100)))


def test_degenerate_inputs():
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)
    assert all(np.isnan(ratio_bootstrap_ci([1.0], [2.0], 100)))
    with pytest.raises(ValueError, match="share no problem"):
        paired_difference({"a": 1.0}, {"b": 1.0})


# ---------------------------------------------------------------- across training seeds

@pytest.mark.parametrize("q, df, table", [(0.975, 1, 12.7062), (0.975, 4, 2.7764), (0.975, 30, 2.0423),
                                          (0.995, 4, 4.6041), (0.999, 4, 7.1732), (0.95, 10, 1.8125),
                                          (0.025, 4, -2.7764)])
def test_t_quantile_matches_the_tables(q, df, table):
    from giftlab.stats import t_quantile

    assert t_quantile(q, df) == pytest.approx(table, abs=1e-4)


@pytest.mark.parametrize("df", [1, 2])
@pytest.mark.parametrize("q", [0.975, 0.9995, 1 - 0.05 / 192, 0.99999, 1 - 1e-9, 1e-6])
def test_t_quantile_far_in_the_tail_matches_the_closed_forms(q, df):
    """Bonferroni's levels reach far into the tail (96 checks over 2 seeds: df = 1, q = 0.99974); df = 1 and 2 have
    closed forms: tan(π(q − ½)) and (2q − 1) / sqrt(2q(1 − q))."""
    from giftlab.stats import t_quantile

    p = min(q, 1 - q)  # the tail, as both forms need it without cancellation
    exact = 1 / math.tan(math.pi * p) if df == 1 else (1 - 2 * p) / math.sqrt(2 * p * (1 - p))
    assert t_quantile(q, df) == pytest.approx(math.copysign(exact, q - 0.5), rel=1e-9)


@pytest.mark.parametrize("df", [3, 4, 7, 30, 500])
def test_t_quantile_inverts_the_t_cdf(df):
    """At every level the claims use, the quantile's CDF (mpmath's, at 30 digits: an independent implementation)
    is q."""
    import mpmath

    from giftlab.stats import t_quantile

    mpmath.mp.dps = 30

    def cdf(x):  # P(T <= x) = 1 - I_{df/(df+x^2)}(df/2, 1/2) / 2 for x >= 0
        return 1 - mpmath.betainc(df / 2, 0.5, 0, df / (df + x * x), regularized=True) / 2

    for q in (0.6, 0.975, 0.999, 1 - 0.05 / 192, 1 - 1e-8):
        assert float(cdf(mpmath.mpf(t_quantile(q, df)))) == pytest.approx(q, abs=1e-13)


def test_seed_interval_and_bonferroni():
    from giftlab.stats import seed_interval, simultaneous_alpha

    s = seed_interval([1, 2, 3, 4, 5])
    assert (s["mean"], s["n"]) == (3.0, 5) and s["sd"] == pytest.approx(1.5811388)
    assert s["ci"] == pytest.approx([3 - 2.7764451 * 1.5811388 / 5 ** 0.5, 3 + 2.7764451 * 1.5811388 / 5 ** 0.5])
    one = seed_interval([0.4])
    assert one["n"] == 1 and all(np.isnan(one["ci"]))
    assert simultaneous_alpha(0.05, 24) == pytest.approx(0.05 / 24) and simultaneous_alpha(0.05, 0) == 0.05
    with pytest.raises(ValueError):
        seed_interval([])


def test_nested_bootstrap_is_wider_than_problems_alone_when_seeds_differ():
    from giftlab.stats import bootstrap_ci, nested_bootstrap_ci

    rng = np.random.default_rng(0)
    seed_effects = np.array([-0.1, 0.0, 0.1, 0.05, -0.05])
    matrix = 0.5 + seed_effects[:, None] + rng.normal(0, 0.1, (5, 200))
    lo, hi = nested_bootstrap_ci(matrix, 2000)
    plo, phi = bootstrap_ci(matrix.mean(axis=0), 2000)
    assert lo < matrix.mean() < hi and (hi - lo) > 2 * (phi - plo)


def test_ratio_intervals_never_score_a_resample_without_units_as_zero():
    """A resample that draws only units with no count (MT-Bench dialogues whose turns all went unrated) has no
    ratio: it used to be scored 0 (sum / max(count, 1)), an interval below every observed rating."""
    # one dialogue rated 9 on both turns, two whose turns are all unrated: every defined resample's ratio is 9
    assert ratio_bootstrap_ci([18.0, 0.0, 0.0], [2, 0, 0], 500, seed=1) == (9.0, 9.0)
    assert all(np.isnan(ratio_bootstrap_ci([0.0, 0.0, 0.0], [0, 0, 0], 500)))  # nothing rated: no interval
    lo, hi = paired_ratio_bootstrap_ci([4.0, 0.0, 0.0], [2, 0, 0], [2.0, 0.0, 0.0], [2, 0, 0], 500, seed=1)
    assert (lo, hi) == (1.0, 1.0)
    assert all(np.isnan(paired_ratio_bootstrap_ci([0.0, 0.0], [0, 0], [0.0, 0.0], [0, 0], 100)))


def test_a_problem_without_samples_is_an_error_not_a_missing_pass_at_k():
    from giftlab.stats import pass_at_k
    with pytest.raises(ValueError, match="no samples"):
        pass_at_k([[True, False], []], (1, 2))


def test_resamples_drawn_in_chunks_are_one_whole_draw(monkeypatch):
    """The indices come a few rows at a time (bounded memory); the intervals are those of one [resamples × units]
    draw, written out here the straightforward way."""
    import giftlab.stats as stats

    monkeypatch.setattr(stats, "_CHUNK_INDICES", 7 * 37 + 5)  # 7 rows of 37 units per chunk, the last one short
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=37), rng.normal(size=23)
    counts, counts_b = rng.integers(1, 5, 37).astype(float), rng.integers(1, 5, 37).astype(float)
    n, alpha = 250, 0.1

    def whole(n_units, seed=0):
        return np.random.default_rng(seed).integers(0, n_units, size=(n, n_units))

    def quantiles(v):
        return tuple(float(q) for q in np.quantile(v, [alpha / 2, 1 - alpha / 2]))

    idx = whole(37)
    assert stats.bootstrap_ci(x, n, alpha) == quantiles(x[idx].mean(1))
    assert stats.ratio_bootstrap_ci(x, counts, n, alpha=alpha) == quantiles(x[idx].sum(1) / counts[idx].sum(1))
    assert stats.paired_ratio_bootstrap_ci(x, counts, 2 * x, counts_b, n, alpha) == quantiles(
        x[idx].sum(1) / counts[idx].sum(1) - (2 * x)[idx].sum(1) / counts_b[idx].sum(1))
    g = np.random.default_rng(0)  # groups drawn one after the other from one generator
    gx, gy = g.integers(0, 37, size=(n, 37)), g.integers(0, 23, size=(n, 23))
    assert stats.stratified_bootstrap_ci([x, y], n, alpha) == quantiles((x[gx].mean(1) + y[gy].mean(1)) / 2)


def test_resamples_leave_twenty_beyond_each_end_of_a_bonferroni_interval():
    from giftlab.stats import resamples_for

    assert resamples_for(0.05) == 10000  # 250 per tail already
    assert resamples_for(0.05 / 12) == 10000  # claim 1 of the tiny default: 20.8 per tail
    assert resamples_for(0.05 / 48) == 38400  # claim 3 of the tiny default: was 5 per tail at 10,000
    assert resamples_for(0.05 / 48) * 0.05 / 48 / 2 == pytest.approx(20)
