"""Every benchmark a plan evaluates, loaded and checked as its evaluation job will load it, before any job runs.

The evaluation jobs come last in the DAG, hours of GPU time after the first training job: a benchmark file that
does not load (or loads a different number of problems than the official set) is best found on the login node.
scripts/check_benchmarks.py prints :func:`check_benchmark_files`'s rows.
"""

from __future__ import annotations

from typing import Any, Mapping

from giftlab.config import eval_settings
from giftlab.evaluation.benchmarks import load_benchmark_checked
from giftlab.jobs import EvalSettings
from giftlab.plan import Plan


def check_benchmark_files(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per benchmark of the plan: ``{"benchmark", "source", "report"}`` (``check_records``' report) or
    ``{"benchmark", "source", "error"}`` (the one-line error the evaluation job would stop with)."""
    plan = Plan(config)
    files = plan.benchmark_files("all")
    required = plan.required_benchmark_copies()  # the copies the plan refuses to run without
    rows = []
    for name in plan.benchmarks("all"):
        job = EvalSettings.for_benchmark({**eval_settings(config["eval"], name), "benchmark": name})
        path = files.get(name)
        row = {"benchmark": name, "source": path or "the hub (no file in eval.benchmark_dir)"}
        if name in required:
            expected, why = required[name]
            rows.append({**row, "source": plan.bench_dir, "error": f"no such file: {expected} ({why})"})
            continue
        try:
            _, row["report"] = load_benchmark_checked(name, path=path, **job.load_options())
        except (ValueError, OSError) as exc:  # RowFileError is a ValueError
            row["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        rows.append(row)
    return rows


def describe(row: Mapping[str, Any]) -> str:
    """One line: the counts, what differs from the official set, and any row the benchmark's own rules resolved."""
    if "error" in row:
        return f"{row['benchmark']}: ERROR reading {row['source']}: {row['error']}"
    r = row["report"]
    line = (f"{row['benchmark']}: {r['problems']} problems from {r['rows_read']} rows of {row['source']} "
            f"(filtered {r['rows_filtered']}, duplicates dropped {r['duplicates_dropped']}, "
            f"repeats scored {r['repeats_scored']})")
    if r["size_matches_official"] is False:
        line += f"; NOT the official {r['official_size']}"
    for note in r["gold_notes"]:
        line += f"; row {note['row']} ({note['id']}): {note['note']}"
    return line
