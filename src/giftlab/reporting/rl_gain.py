"""What GRPO adds: pass@1 after RL minus before RL, paired over problems, with a bootstrap interval.

Pre- and post-RL evaluations sample with the same per-sample seeds (seeded by run seed, prompt and
sample index), so the per-problem difference is a paired comparison and its interval is much
tighter than the two marginal intervals combined.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from giftlab.reporting.runs import RunSpecs
from giftlab.reporting.seeds import collapse_seeds
from giftlab.stats import paired_difference


def per_problem_counts(samples: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """(samples, correct samples) of each problem, by its ``prompt_id``."""
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in samples:
        tally = hits[row["prompt_id"]]
        tally[0] += 1
        tally[1] += bool(row["correct"])
    return {pid: (n, c) for pid, (n, c) in hits.items()}


def per_problem_accuracy(samples: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Mean correctness over the samples of each problem (pass@1 per problem)."""
    return {pid: c / n for pid, (n, c) in per_problem_counts(samples).items()}


def rl_gain_table(pairs: Sequence[tuple[str, str, str, Sequence[Mapping], Sequence[Mapping]]],
                  run_specs=None) -> pd.DataFrame:
    """One row per (backbone, run, benchmark) from (backbone, run, benchmark, pre_samples, post_samples); in %.
    ``run_specs``: the plan's run table (labels and row order)."""
    specs = RunSpecs(run_specs)
    rows = []
    for backbone, run, benchmark, pre, post in pairs:
        g = paired_difference(per_problem_accuracy(pre), per_problem_accuracy(post))
        rows.append({"backbone": backbone, "strategy": specs.label(run), "run": run, "benchmark": benchmark,
                     "n_problems": g["n_problems"], "pass@1 before RL": 100 * g["pre"],
                     "pass@1 after RL": 100 * g["post"], "gain": 100 * g["gain"],
                     "gain CI95": f"[{100 * g['gain_ci95'][0]:+.2f}, {100 * g['gain_ci95'][1]:+.2f}]",
                     "beyond noise": "yes" if g["gain_ci95"][0] > 0 or g["gain_ci95"][1] < 0 else "no"})
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(["backbone", "run"], key=lambda c: c.map(specs.sort_key) if c.name == "run" else c)
    df.attrs["digits"] = {"n_problems": 0}  # every other number: 2 decimals
    # replicates over seeds (config seeds): one row per cell and benchmark, the gains' mean and seed interval
    return collapse_seeds(df, specs, ["pass@1 before RL", "pass@1 after RL", "gain"],
                          drop_columns=["gain CI95", "beyond noise"], by=("backbone", "benchmark"))
