"""Tables over training seeds: the replicates of one grid cell (config ``seeds``) collapsed into one row.

A run table with replicates (``group`` in its records, :meth:`giftlab.plan.Plan.run_table`) turns a table of one
row per run into one row per (backbone, cell): each value column is the mean over the cell's seeds, with its
seed-level 95% interval (Student's t over the seeds, :func:`giftlab.stats.seed_interval`) in ``<column> seed CI95``
and the number of seeds in ``seeds``. A run table without replicates leaves the table as it is. A cell missing a
seed in one column is averaged over the seeds it has (``seeds`` says how many rows the cell had).
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from giftlab.reporting.runs import RunSpecs
from giftlab.stats import seed_interval

SEEDS_COLUMN = "seeds"


def has_replicates(specs: RunSpecs) -> bool:
    return any(rec.get("group") is not None for rec in specs.table.values())


def seed_ci_column(column: str) -> str:
    return f"{column} seed CI95"


def collapse_seeds(df: pd.DataFrame, specs: RunSpecs, value_columns: Sequence[str],
                   drop_columns: Sequence[str] = (), ci_digits: int = 2, by: Sequence[str] = ("backbone",),
                   count_columns: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (``by`` columns, cell): ``value_columns`` averaged over the cell's seeds, each followed by its seed
    interval; ``count_columns`` summed over them (Table 5's judged, unrated and truncated turns: those of all the
    seeds whose ratings the mean pools); ``drop_columns`` (per-run intervals, which a mean over seeds does not have)
    removed; ``run`` becomes the cell's id; other columns keep the first replicate's value (labels, paper numbers:
    equal across seeds)."""
    if df.empty or not has_replicates(specs):
        return df
    rows = []
    cells = df["run"].map(specs.group).rename("cell")
    for key, members in df.groupby([*(df[c] for c in by), cells], sort=False):
        cell = key[-1]
        row = members.iloc[0].to_dict()
        row["run"] = cell
        for col in value_columns:
            values = [v for v in members[col].tolist() if not (isinstance(v, float) and math.isnan(v))]
            if not values:
                row[col], row[seed_ci_column(col)] = math.nan, ""
                continue
            summary = seed_interval(values)
            row[col] = summary["mean"]
            lo, hi = summary["ci"]
            row[seed_ci_column(col)] = "" if math.isnan(lo) else f"[{lo:.{ci_digits}f}, {hi:.{ci_digits}f}]"
        for col in count_columns:
            counts = [v for v in members[col].tolist() if not (isinstance(v, float) and math.isnan(v))]
            row[col] = sum(counts) if counts else math.nan
        row[SEEDS_COLUMN] = len(members)
        rows.append(row)
    columns = [c for c in df.columns if c not in set(drop_columns)]
    at = columns.index("run") + 1
    columns = [*columns[:at], SEEDS_COLUMN, *columns[at:]]
    for col in value_columns:  # each interval right after its value
        columns.insert(columns.index(col) + 1, seed_ci_column(col))
    out = pd.DataFrame(rows, columns=columns)
    out.attrs = dict(df.attrs)
    digits = out.attrs.get("digits", 2)
    if not isinstance(digits, dict):
        digits = {c: digits for c in columns}
    out.attrs["digits"] = {**digits, SEEDS_COLUMN: 0}
    labels = dict(out.attrs.get("labels", {}))
    for col in value_columns:
        if col in labels:
            labels[seed_ci_column(col)] = f"{labels[col]} seed CI95"
    out.attrs["labels"] = labels
    return out
