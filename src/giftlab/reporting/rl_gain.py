"""What GRPO adds: pass@1 after RL minus before RL, paired over problems, with a bootstrap interval.

Pre- and post-RL evaluations sample with the same per-sample seeds (seeded by run seed, prompt and
sample index), so the per-problem difference is a paired comparison and its interval is much
tighter than the two marginal intervals combined.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from giftlab.reporting.tables import run_sort_key, strategy_label


def per_problem_accuracy(samples: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Mean correctness over the samples of each problem (pass@1 per problem)."""
    hits: dict[str, list[float]] = defaultdict(list)
    for row in samples:
        hits[row["prompt_id"]].append(1.0 if row["correct"] else 0.0)
    return {pid: sum(v) / len(v) for pid, v in hits.items()}


def paired_gain(pre: Mapping[str, float], post: Mapping[str, float], resamples: int = 2000, seed: int = 0,
                alpha: float = 0.05) -> dict[str, float]:
    """Mean of post − pre over the shared problems and its percentile bootstrap interval."""
    ids = sorted(set(pre) & set(post))
    if not ids:
        raise ValueError("paired_gain: the two evaluations share no problem ids")
    diffs = [post[i] - pre[i] for i in ids]
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(len(diffs))] for _ in diffs) / len(diffs) for _ in range(resamples))
    lo, hi = means[int(alpha / 2 * resamples)], means[int((1 - alpha / 2) * resamples) - 1]
    return {"n_problems": len(ids), "pre": sum(pre[i] for i in ids) / len(ids),
            "post": sum(post[i] for i in ids) / len(ids), "gain": sum(diffs) / len(diffs),
            "gain_ci95": [lo, hi]}


def rl_gain_table(pairs: Sequence[tuple[str, str, str, Sequence[Mapping], Sequence[Mapping]]]) -> pd.DataFrame:
    """One row per (backbone, run, benchmark) from (backbone, run, benchmark, pre_samples, post_samples); in %."""
    rows = []
    for backbone, run, benchmark, pre, post in pairs:
        g = paired_gain(per_problem_accuracy(pre), per_problem_accuracy(post))
        rows.append({"backbone": backbone, "strategy": strategy_label(run), "run": run, "benchmark": benchmark,
                     "n_problems": g["n_problems"], "pass@1 before RL": 100 * g["pre"],
                     "pass@1 after RL": 100 * g["post"], "gain": 100 * g["gain"],
                     "gain CI95": f"[{100 * g['gain_ci95'][0]:+.2f}, {100 * g['gain_ci95'][1]:+.2f}]",
                     "beyond noise": "yes" if g["gain_ci95"][0] > 0 or g["gain_ci95"][1] < 0 else "no"})
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["backbone", "run"], key=lambda c: c.map(run_sort_key) if c.name == "run" else c)
    df.attrs["digits"] = {"n_problems": 0}  # every other number: 2 decimals
    return df
