"""Two workspaces of the same config, compared: did a change keep every result?

    .venv/bin/python benchmarks/compare_workspaces.py BEFORE_WS AFTER_WS

Byte for byte: tables (csv, md, tex), figure PNGs (PDFs carry their creation time), MT-Bench answers and judgements,
training step logs, data files, exported weights (``models/**/*.safetensors``). Sample files: row by row without their
per-sample ``seconds``. Result JSONs: equal once provenance and wall-clock keys are left out. A file of these kinds
that only AFTER_WS has is a difference too. Prints each difference and a count; exits 1 if any.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

BYTES = ["results/tables/*.csv", "results/tables/*.md", "results/tables/*.tex", "figures/*.png",
         "results/mtbench/answers/**/*.jsonl", "results/mtbench/judgements/**/*.jsonl", "results/steps/**/*.csv",
         "data/**/*.jsonl", "models/**/*.safetensors"]
# wall-clock keys: ``time`` as a word of the key only (``grading/timeouts`` is a count, a result)
TIMING = re.compile(r"seconds|runtime|per_second|step_time|elapsed|(^|[_/])time($|_)")
RECORD_KEYS = ("provenance", "command", "created_utc")


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in RECORD_KEYS and not TIMING.search(k)}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def compare(before: Path, after: Path) -> list[str]:
    diffs, counts = [], {"bytes": 0, "samples": 0, "json": 0}
    for pattern in BYTES:
        for path in sorted(before.glob(pattern)):
            rel, counts["bytes"] = path.relative_to(before), counts["bytes"] + 1
            other = after / rel
            if not other.exists() or path.read_bytes() != other.read_bytes():
                diffs.append(f"bytes differ: {rel}")
    rows = lambda p: [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in p.read_text().splitlines()]
    for path in sorted(before.glob("results/eval/**/*.samples.jsonl")):
        rel, counts["samples"] = path.relative_to(before), counts["samples"] + 1
        if not (after / rel).exists() or rows(path) != rows(after / rel):
            diffs.append(f"samples differ: {rel}")
    for path in sorted(before.glob("results/**/*.json")):
        if path.name.endswith(".provenance.json"):
            continue
        rel, counts["json"] = path.relative_to(before), counts["json"] + 1
        other = after / rel
        if not other.exists() or without_timings(json.loads(path.read_text())) != without_timings(
                json.loads(other.read_text())):
            diffs.append(f"json differs: {rel}")
    patterns = [*BYTES, "results/eval/**/*.samples.jsonl", "results/**/*.json"]
    extra = {p.relative_to(after) for g in patterns for p in after.glob(g)} - {
        p.relative_to(before) for g in patterns for p in before.glob(g)}
    diffs += [f"only in {after}: {rel}" for rel in sorted(extra)]
    print(f"{counts['bytes']} files by bytes, {counts['samples']} sample files by rows, {counts['json']} result JSONs "
          f"without provenance and timings: {len(diffs)} differ")
    return diffs


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit("usage: compare_workspaces.py BEFORE_WS AFTER_WS")
    diffs = compare(Path(args[0]), Path(args[1]))
    for line in diffs:
        print(line)
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
