"""The statistics of every table and figure: unbiased pass@k, bootstrap intervals, paired differences.

One interval rule everywhere: a percentile bootstrap. Units (problems, validation examples) are resampled with
replacement by ``numpy.random.default_rng(seed)``, ``n_resamples`` times, and the interval is
``numpy.quantile`` (its default linear interpolation) of the resampled statistic at α/2 and 1 − α/2.

* :func:`bootstrap_ci`: the mean of per-unit values (pass@1 over problems: :func:`pass_at_1_ci`);
* :func:`stratified_bootstrap_ci`: the mean over groups (benchmarks) of their means, resampled within each group;
* :func:`ratio_bootstrap_ci`: a pooled ratio sum(sums) / sum(counts) (token means over examples: Table 4's KL);
* :func:`paired_ratio_bootstrap_ci`: the difference of two such ratios over the same examples (claim 3, one seed);
* :func:`paired_difference`: the mean of post − pre over the units both share (what GRPO adds: ``rl_gain``).

Across training seeds (config ``seeds``) there are few units (5), too few for a percentile bootstrap, so the
seed-level interval is Student's t: mean ± t(1 − α/2, n − 1) · sd / √n (:func:`seed_interval`); a paired
comparison over seeds is the same interval of the per-seed differences. :func:`nested_bootstrap_ci` pools problems
and seeds (seeds resampled, then problems within the resample, the same problems for every seed), the interval of
the grand mean both sources of noise widen. Several comparisons judged together use Bonferroni's level α / m
(:func:`simultaneous_alpha`).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np


def pass_at_k_single(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k) for one problem with ``c`` of ``n`` samples correct.

    Product form 1 - prod_{i=n-c+1}^{n} (1 - k/i): no huge binomials; exactly 1 when n - c < k.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def counts(data) -> list[tuple[int, int]]:
    """Per-problem (n, c) from a correctness matrix (rows of bools, may be ragged) or (n, c) pairs."""
    out = []
    for row in data:
        if isinstance(row, tuple) and len(row) == 2 and not isinstance(row[0], (bool, np.bool_)):
            n, c = int(row[0]), int(row[1])
        else:
            flags = [bool(x) for x in row]
            n, c = len(flags), sum(flags)
        if n < 1:  # else every k would be left out of pass_at_k (n_min = 0) and its summary would have no pass@k
            raise ValueError(f"pass@k: problem {len(out)} has no samples")
        out.append((n, c))
    if not out:
        raise ValueError("pass@k needs at least one problem")
    return out


def per_problem_pass_at_k(data, k: int) -> np.ndarray:
    return np.array([pass_at_k_single(n, c, k) for n, c in counts(data)])


def pass_at_k(data, ks: Iterable[int] = (1,)) -> dict[str, float]:
    """Mean unbiased pass@k over problems, as ``{"pass@k": value}``.

    ``data``: a correctness matrix (one row of booleans per problem) or a list of ``(n, c)``
    tuples. A ``k`` larger than the smallest per-problem ``n`` is left out (it has no unbiased
    estimate); so are non-positive ``k``.
    """
    nc = counts(data)
    n_min = min(n for n, _ in nc)
    result = {}
    for k in sorted(set(int(k) for k in ks)):
        if 1 <= k <= n_min:
            result[f"pass@{k}"] = float(np.mean([pass_at_k_single(n, c, k) for n, c in nc]))
    return result


# unit indices drawn at once (32 MB of int64): memory stays flat whatever the number of resamples or units (the
# paper's MMLU-Pro has 12,032 problems; 10,000 resamples of them drawn whole were 963 MB)
_CHUNK_INDICES = 1 << 22


def _per_resample(rng: np.random.Generator, n_units: int, n_resamples: int, statistic) -> np.ndarray:
    """``statistic(indices)`` of every resample, the [rows, n_units] unit indices drawn with replacement (the one
    resampling of this module) a chunk of rows at a time: numpy draws them row after row, so the chunks hold the
    same indices as one [n_resamples, n_units] draw would."""
    rows = max(1, _CHUNK_INDICES // n_units)
    chunks = [statistic(rng.integers(0, n_units, size=(min(rows, n_resamples - start), n_units)))
              for start in range(0, n_resamples, rows)]
    return np.concatenate(chunks) if chunks else np.empty(0)


def resamples_for(alpha: float, at_least: int = 10000, per_tail: int = 20) -> int:
    """Resamples enough for a percentile interval at level 1 − α: ``per_tail`` of them beyond each end (a Bonferroni
    level α / m of many checks puts the ends far out: m = 48 at 10,000 resamples left 5 per tail), and never fewer
    than ``at_least``."""
    return max(at_least, math.ceil(per_tail / (alpha / 2)))


def _interval(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _ratio(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """sums / counts per resample, NaN where a resample drew no count at all (its ratio is undefined, not 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.nan)


def _ratio_interval(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    """The percentile interval over the resamples whose ratio is defined; (nan, nan) when none is."""
    defined = stats[~np.isnan(stats)]
    return _interval(defined, alpha) if defined.size else (float("nan"), float("nan"))


def bootstrap_ci(values: Sequence[float], n_resamples: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-unit ``values`` (units resampled)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("bootstrap_ci needs a non-empty 1-D sequence of per-problem values")
    rng = np.random.default_rng(seed)
    return _interval(_per_resample(rng, x.size, n_resamples, lambda idx: x[idx].mean(axis=1)), alpha)


def stratified_bootstrap_ci(groups: Sequence[Sequence[float]], n_resamples: int = 1000, alpha: float = 0.05,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of the groups' means (e.g. a pass@k averaged over benchmarks), units
    resampled within each group; one group is :func:`bootstrap_ci`, draw for draw."""
    xs = [np.asarray(g, dtype=np.float64) for g in groups]
    if not xs or any(x.ndim != 1 or x.size == 0 for x in xs):
        raise ValueError("stratified_bootstrap_ci needs non-empty 1-D groups of per-problem values")
    rng = np.random.default_rng(seed)
    means = sum(_per_resample(rng, x.size, n_resamples, lambda idx, x=x: x[idx].mean(axis=1)) for x in xs) / len(xs)
    return _interval(means, alpha)


def ratio_bootstrap_ci(sums: Sequence[float], counts: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                       alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap CI of the pooled ratio sum(sums) / sum(counts), units resampled; (nan, nan) with fewer
    than 2 units or no resamples. A resample whose units have no count (e.g. MT-Bench dialogues with every turn
    unrated) has no ratio and is left out, never scored 0; (nan, nan) when no resample has one."""
    sums, counts = np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    if n_resamples <= 0 or len(sums) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = _per_resample(rng, len(sums), n_resamples, lambda idx: _ratio(sums[idx].sum(1), counts[idx].sum(1)))
    return _ratio_interval(stats, alpha)


def paired_ratio_bootstrap_ci(sums_a: Sequence[float], counts_a: Sequence[float], sums_b: Sequence[float],
                              counts_b: Sequence[float], n_resamples: int = 1000, alpha: float = 0.05,
                              seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of sum(sums_a) / sum(counts_a) − sum(sums_b) / sum(counts_b), the units (the same
    examples under both) resampled together, so what they share cancels; (nan, nan) with fewer than 2 units. A
    resample without counts on either side has no difference and is left out (as in :func:`ratio_bootstrap_ci`)."""
    arrays = [np.asarray(x, dtype=np.float64) for x in (sums_a, counts_a, sums_b, counts_b)]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError("paired_ratio_bootstrap_ci: the four arrays must be 1-D over the same units")
    if n_resamples <= 0 or arrays[0].size < 2:
        return float("nan"), float("nan")
    sa, ca, sb, cb = arrays

    def difference(idx):
        return _ratio(sa[idx].sum(1), ca[idx].sum(1)) - _ratio(sb[idx].sum(1), cb[idx].sum(1))

    return _ratio_interval(_per_resample(np.random.default_rng(seed), sa.size, n_resamples, difference), alpha)


def paired_difference(pre: Mapping[str, float], post: Mapping[str, float], n_resamples: int = 2000, seed: int = 0,
                      alpha: float = 0.05) -> dict[str, float]:
    """Mean of post − pre over the units both share, with its percentile bootstrap interval (units resampled, so
    the pairing is kept)."""
    ids = sorted(set(pre) & set(post))
    if not ids:
        raise ValueError("paired_difference: the two evaluations share no problem ids")
    diffs = np.array([post[i] - pre[i] for i in ids], dtype=np.float64)
    lo, hi = bootstrap_ci(diffs, n_resamples, alpha, seed)
    return {"n_problems": len(ids), "pre": float(np.mean([pre[i] for i in ids])),
            "post": float(np.mean([post[i] for i in ids])), "gain": float(diffs.mean()), "gain_ci95": [lo, hi]}


def pass_at_1_ci(data, n_resamples: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Bootstrap CI over problems for pass@1 (per-problem c/n)."""
    return bootstrap_ci([c / n for n, c in counts(data)], n_resamples, alpha, seed)


# ---------------------------------------------------------------- across training seeds

def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz; Numerical Recipes
    §6.4), for x < (a + 1) / (a + b + 2), where it converges fast."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function (the CDF of Beta(a, b) at x)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_tail(x: float, df: int) -> float:
    """P(T > x) for Student's t with ``df`` degrees of freedom, x ≥ 0: ½ · I_{df/(df+x²)}(df/2, ½), computed without
    cancellation far into the tail."""
    return 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + x * x))


def t_quantile(q: float, df: int) -> float:
    """Student's t quantile (``0 < q < 1``, ``df`` ≥ 1): bisection on the tail probability :func:`t_tail` (the
    regularized incomplete beta function), to double precision at any level Bonferroni's correction asks for."""
    if not 0 < q < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0 < q < 1 and df >= 1, got q={q}, df={df}")
    if q == 0.5:
        return 0.0
    tail = min(q, 1.0 - q)  # P(T > x) at the quantile's absolute value
    lo, hi = 0.0, 1.0
    while t_tail(hi, df) > tail:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if t_tail(mid, df) > tail else (lo, mid)
    x = 0.5 * (lo + hi)
    return x if q > 0.5 else -x


def simultaneous_alpha(alpha: float, n_comparisons: int) -> float:
    """Bonferroni: each of ``n_comparisons`` intervals at level α / m keeps the chance that any of them misses
    below α."""
    return alpha / max(1, int(n_comparisons))


def seed_interval(values: Sequence[float], alpha: float = 0.05) -> dict[str, float | list[float] | int]:
    """Mean over seeds with its Student-t interval: {"mean", "ci": [lo, hi], "sd", "n"} (sd: the sample standard
    deviation; one seed: sd and interval NaN)."""
    x = np.asarray([float(v) for v in values], dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or np.isnan(x).any():
        raise ValueError("seed_interval needs a non-empty list of numbers (one per seed)")
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "ci": [math.nan, math.nan], "sd": math.nan, "n": 1}
    sd = float(x.std(ddof=1))
    half = t_quantile(1 - alpha / 2, x.size - 1) * sd / math.sqrt(x.size)
    return {"mean": mean, "ci": [mean - half, mean + half], "sd": sd, "n": int(x.size)}


def nested_bootstrap_ci(values: Sequence[Sequence[float]], n_resamples: int = 2000, alpha: float = 0.05,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the grand mean of a [seeds × problems] matrix (the same problems in every row):
    each resample draws seeds with replacement, then problems with replacement (one draw of problems per resample,
    shared by its seeds, as the same problems are shared by the runs)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError("nested_bootstrap_ci needs a non-empty [seeds x problems] matrix")
    rng = np.random.default_rng(seed)
    n_seeds, n_problems = x.shape
    stats = np.empty(n_resamples)
    for b in range(n_resamples):
        rows = rng.integers(0, n_seeds, n_seeds)
        cols = rng.integers(0, n_problems, n_problems)
        stats[b] = x[np.ix_(rows, cols)].mean()
    return _interval(stats, alpha)
