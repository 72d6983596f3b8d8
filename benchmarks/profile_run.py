"""Where a finished workspace's time went: per rule, per phase inside its jobs, and each phase next to its floor.

    .venv/bin/python benchmarks/profile_run.py [WORKSPACE] [--threads 1] [--json profile.json]

Reads what a `snakemake` run leaves in WORKSPACE (default: the current directory): each job's wall time and peak
memory from Snakemake's ``benchmark:`` files (``logs/benchmark/**.tsv``), the phases timed inside each job
from the ``giftlab-phase`` lines of its log (giftlab.profiling), and the run's span from Snakemake's newest
``.snakemake/log``. In the same process it measures the machine's float32 matmul rate with ``--threads`` torch
threads (the jobs' ``threads``), and prints three tables:

1. per rule: jobs, wall time (sum and mean), share of all job time, peak RSS;
2. per phase: jobs, time, share of its rule's wall time; "start + imports + other" is a rule's wall time minus
   its phases (process start, imports, reading inputs, writing results);
3. the phases that do matmuls: tokens, GFLOP, the floor (GFLOP at the measured rate of a large matmul) and
   time / floor, and a second floor at the rate of a matmul of the models' own shape (``--shape``): tiny models
   cannot reach the large matmul's rate, so the shaped floor is the one a tiny job could approach.

Nested phases (``sft/train/validate`` inside ``sft/train``) are listed under their parent and not subtracted twice.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from giftlab.profiling import read_phases  # noqa: E402

OTHER = "start + imports + other"


def rule_of(tsv: Path, root: Path) -> str:
    """The rule group of a benchmark file: its first folder (two for evaluations: eval/rl, eval/sft, ...)."""
    parts = tsv.relative_to(root).parts
    if parts[0] in ("eval", "extra") and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0] if len(parts) > 1 else tsv.stem


def read_jobs(workspace: Path) -> list[dict]:
    """One record per job: rule, wall seconds, peak RSS (MB) and the phases from its log.

    Snakemake's ``cpu_time`` column is not read: it is sampled while the job runs and misses most of a short job.
    """
    root = workspace / "logs" / "benchmark"
    if not root.is_dir():
        raise SystemExit(f"{root}: no benchmark files; run snakemake there first (its rules write them)")
    jobs = []
    for tsv in sorted(root.rglob("*.tsv")):
        with tsv.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        log = workspace / "logs" / tsv.relative_to(root).with_suffix(".log")
        phases = read_phases(log.read_text(errors="replace")) if log.exists() else []
        row = rows[-1]
        jobs.append({"rule": rule_of(tsv, root), "job": str(tsv.relative_to(root).with_suffix("")),
                     "seconds": float(row["s"]), "max_rss_mb": _number(row.get("max_rss")), "phases": phases})
    if not jobs:
        raise SystemExit(f"{root}: no benchmark rows")
    return jobs


def _number(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def run_span(workspace: Path) -> float | None:
    """Seconds from the newest Snakemake log's start to its last timestamp (None without a log)."""
    logs = sorted((workspace / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return None
    stamps = re.findall(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$", logs[-1].read_text(), re.M)
    if len(stamps) < 2:
        return None
    parse = lambda s: datetime.strptime(" ".join(s.split()), "%a %b %d %H:%M:%S %Y")
    return (parse(stamps[-1]) - parse(stamps[0])).total_seconds()


def matmul_rate(threads: int, shape: tuple[int, int, int] = (1024, 1024, 1024), repeats: int = 5) -> float:
    """float32 FLOP/s of an (m x k) @ (k x n) matmul on ``threads`` threads, best of ``repeats``."""
    import torch

    torch.set_num_threads(threads)
    m, k, n = shape
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b
    calls = max(1, int(1e9 // (2 * m * k * n)))  # about a GFLOP per timing: small shapes are timed in a loop
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            a @ b
        best = min(best, (time.perf_counter() - start) / calls)
    return 2 * m * k * n / best


def summarise(jobs: list[dict], rate: float, shaped_rate: float | None = None) -> dict:
    """The three tables as lists of rows; ``shaped_rate`` adds a second floor at the models' own matmul shape."""
    total = sum(j["seconds"] for j in jobs)
    rules: dict[str, list[dict]] = defaultdict(list)
    for j in jobs:
        rules[j["rule"]].append(j)
    by_rule, by_phase, floors = [], [], []
    for rule, members in sorted(rules.items(), key=lambda kv: -sum(j["seconds"] for j in kv[1])):
        wall = sum(j["seconds"] for j in members)
        rss = [j["max_rss_mb"] for j in members if j["max_rss_mb"] is not None]
        by_rule.append({"rule": rule, "jobs": len(members), "seconds": wall, "mean_seconds": wall / len(members),
                        "share": wall / total,
                        "max_rss_mb": max(rss) if rss else None})
        phases: dict[str, dict] = {}
        top_level = 0.0
        for j in members:
            for p in j["phases"]:
                agg = phases.setdefault(p["phase"], {"jobs": set(), "seconds": 0.0, "tokens": 0, "flops": 0})
                agg["jobs"].add(j["job"])
                agg["seconds"] += p["seconds"]
                agg["tokens"] += p.get("tokens") or 0
                agg["flops"] += p.get("flops") or 0
                if p["phase"].count("/") == 1:
                    top_level += p["seconds"]
        for name in sorted(phases, key=lambda n: (n.split("/")[:2], n)):
            agg = phases[name]
            by_phase.append({"rule": rule, "phase": name, "jobs": len(agg["jobs"]), "seconds": agg["seconds"],
                             "share_of_rule": agg["seconds"] / wall})
            if agg["flops"]:
                floor = agg["flops"] / rate
                row = {"rule": rule, "phase": name, "tokens": agg["tokens"], "gflop": agg["flops"] / 1e9,
                       "seconds": agg["seconds"], "floor_seconds": floor, "times_floor": agg["seconds"] / floor}
                if shaped_rate:
                    row["shaped_floor_seconds"] = agg["flops"] / shaped_rate
                    row["times_shaped_floor"] = agg["seconds"] * shaped_rate / agg["flops"]
                floors.append(row)
        if phases:
            by_phase.append({"rule": rule, "phase": OTHER, "jobs": len(members), "seconds": wall - top_level,
                             "share_of_rule": (wall - top_level) / wall})
    return {"job_seconds": total, "by_rule": by_rule, "by_phase": by_phase, "floors": floors}


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A markdown table; columns are (key, header, format)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        cells = ["" if r.get(k) is None else format(r[k], f) for k, _, f in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workspace", nargs="?", default=".", type=Path)
    p.add_argument("--threads", type=int, default=1, help="torch threads for the matmul rate (the jobs' threads)")
    p.add_argument("--shape", type=int, nargs=3, default=(4096, 64, 256), metavar=("M", "K", "N"),
                   help="a matmul at the models' own size for the second floor (default: a batch of 4096 tokens"
                        " through the tiny default's MLP, hidden 64 -> 256)")
    p.add_argument("--json", type=Path, help="also write the tables here")
    args = p.parse_args(argv)

    jobs = read_jobs(args.workspace)
    rate, shaped = matmul_rate(args.threads), matmul_rate(args.threads, tuple(args.shape))
    result = summarise(jobs, rate, shaped)
    span = run_span(args.workspace)
    result.update(matmul_gflops=rate / 1e9, shaped_matmul_gflops=shaped / 1e9, shape=list(args.shape),
                  threads=args.threads, run_seconds=span, workspace=str(args.workspace))
    print(f"{len(jobs)} jobs, {result['job_seconds']:.0f} s of job time"
          + (f", {span:.0f} s from the first job to the last (newest Snakemake log)" if span else "")
          + f"; float32 matmul on {args.threads} thread(s): {rate / 1e9:.1f} GFLOP/s at 1024³,"
          f" {shaped / 1e9:.1f} GFLOP/s at {'x'.join(map(str, args.shape))} (M x K x N)\n")
    print(table(result["by_rule"], [("rule", "rule", "s"), ("jobs", "jobs", "d"), ("seconds", "wall s", ".0f"),
                                    ("mean_seconds", "mean s", ".1f"), ("share", "share", ".1%"),
                                    ("max_rss_mb", "peak RSS MB", ".0f")]))
    print()
    print(table(result["by_phase"], [("rule", "rule", "s"), ("phase", "phase", "s"), ("jobs", "jobs", "d"),
                                     ("seconds", "s", ".1f"), ("share_of_rule", "of rule", ".1%")]))
    print()
    print(table(result["floors"], [("rule", "rule", "s"), ("phase", "phase", "s"), ("tokens", "tokens", ",d"),
                                   ("gflop", "GFLOP", ".1f"), ("seconds", "s", ".1f"),
                                   ("floor_seconds", "floor s", ".2f"), ("times_floor", "× floor", ".0f"),
                                   ("shaped_floor_seconds", "shaped floor s", ".2f"),
                                   ("times_shaped_floor", "× shaped floor", ".1f")]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
