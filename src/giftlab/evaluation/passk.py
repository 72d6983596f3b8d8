"""Unbiased pass@k (Chen et al., 2021) and a percentile-bootstrap CI over problems."""

from __future__ import annotations

from typing import Iterable, Sequence

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


def bootstrap_ci(values: Sequence[float], n_resamples: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-problem ``values`` (problems resampled)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("bootstrap_ci needs a non-empty 1-D sequence of per-problem values")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def pass_at_1_ci(data, n_resamples: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Bootstrap CI over problems for pass@1 (per-problem c/n)."""
    return bootstrap_ci([c / n for n, c in counts(data)], n_resamples, alpha, seed)
