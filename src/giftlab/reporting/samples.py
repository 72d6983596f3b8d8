"""An evaluation's samples (``<benchmark>.samples.jsonl``) as the reports read them: whole, or one line saying why not.

The evaluation's summary (``<benchmark>.summary.json``, written after the samples) counts its rows
(``n_responses``): a file cut short at a line's end, or appended to, no longer has that many (a torn line is
refused by the row reader already; the rows' per-sample timings make a hash differ from run to run). Rows are also
checked on their own: every problem's samples once each, and as many for every problem.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from giftlab.rowfiles import read_jsonl

SAMPLES_SUFFIX, SUMMARY_SUFFIX = ".samples.jsonl", ".summary.json"


def summary_of(samples: str | Path) -> Path:
    """The summary the evaluation wrote beside a samples file."""
    samples = Path(samples)
    return samples.with_name(samples.name.removesuffix(SAMPLES_SUFFIX) + SUMMARY_SUFFIX)


def samples_damage(samples: str | Path, rows: int | None = None) -> str | None:
    """What says ``samples`` is not as its evaluation wrote it: its row count (``rows``, else counted here) against
    its summary's ``n_responses`` (None: they agree, or no summary says)."""
    try:
        recorded = json.loads(summary_of(samples).read_text()).get("n_responses")
    except (OSError, ValueError, AttributeError):
        return None  # no summary beside it, or one the JSON checks report
    if rows is None:
        with open(samples, "rb") as fh:
            rows = sum(1 for line in fh if line.strip())
    if isinstance(recorded, int) and rows != recorded:
        return (f"{rows} rows where {summary_of(samples).name} counts {recorded}: cut short or appended to since "
                "it was written")
    return None


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a samples file, checked against its summary's row count and on their own; errors are one line
    naming the file and the command that rebuilds it."""
    rows = read_jsonl(path)
    rebuild = f"rebuild it with `snakemake --force {path}`"
    damage = samples_damage(path, len(rows))
    if damage:
        raise ValueError(f"{path}: {damage}; {rebuild}")
    seen: dict[tuple, int] = {}
    for number, row in enumerate(rows, 1):
        key = (row.get("prompt_id"), row.get("sample_index"))
        if key in seen:
            raise ValueError(f"{path}: row {number}: sample {key[1]} of problem {key[0]!r} again (row {seen[key]}); "
                             f"{rebuild}")
        seen[key] = number
    per_problem = Counter(row.get("prompt_id") for row in rows)
    if len(set(per_problem.values())) > 1:
        (most, _), (fewest, n) = per_problem.most_common(1)[0], min(per_problem.items(), key=lambda kv: kv[1])
        raise ValueError(f"{path}: problem {fewest!r} has {n} samples, problem {most!r} {per_problem[most]}: cut "
                         f"short or edited; {rebuild}")
    return rows
