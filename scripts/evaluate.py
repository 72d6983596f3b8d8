"""Evaluate one model on its benchmarks: sample, grade, write samples.jsonl + summary.json per benchmark.

One job per model (rule `evaluate*`): the config's ``benchmarks`` maps each benchmark to its settings, the model is
loaded once, and each benchmark's files go to ``--out-dir``; a retry of a failed or killed job takes back the
benchmarks an earlier try finished (giftlab.evaluation.resume, ``work/evaluate/<out-dir>``). A config with a single ``benchmark`` and
``--samples/--summary`` evaluates just that one:

    python scripts/evaluate.py --config '{"seed": 0, "n_samples": 8, "temperature": 0.6,
        "max_new_tokens": 64, "backend": "auto", "grading_timeout": 10, "benchmark": "tiny_id"}' \
      --model models/sft/<backbone>/<run>/epoch_<k> --benchmark-file data/tiny/benchmarks/tiny_id.jsonl \
      --samples results/eval/.../tiny_id.samples.jsonl --summary results/eval/.../tiny_id.summary.json

Each benchmark's settings are giftlab.jobs.EvalSettings (names, defaults and types there: n_samples, ks,
temperature, max_new_tokens, backend, the grader's and the code sandbox's limits, duplicates, percent_rule, ...);
an unknown or mistyped key is one line. per_benchmark ({}): overrides per benchmark name, e.g. {"aime24":
{"n_samples": 32, "ks": [1, 8, 32]}} (any key except benchmark).

    python scripts/evaluate.py --config '{"seed": 0, "benchmarks": {"gsm8k": {...}, "math500": {...}}}' \
      --model models/rl/qwen/sft --benchmark-file gsm8k=data/benchmarks/gsm8k.jsonl \
      --benchmark-file math500=data/benchmarks/math500.jsonl --out-dir results/eval/rl/qwen/sft
"""

from __future__ import annotations

import logging
from pathlib import Path

import giftlab.cli
from giftlab.cli import ConfigError
from giftlab.evaluation.job import evaluate_benchmark
from giftlab.io import remove_stale_temps

log = logging.getLogger("evaluate")


def main(argv=None) -> None:
    p = giftlab.cli.parser(__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model directory (weights + tokenizer) or a hub id")
    p.add_argument("--benchmark-file", action="append", default=[],
                   help="local benchmark file; with a `benchmarks` config: NAME=FILE, once per local file")
    p.add_argument("--samples", help="output: one JSON line per sample (one benchmark)")
    p.add_argument("--summary", help="output: summary JSON with provenance (one benchmark)")
    p.add_argument("--out-dir", help="output folder: <name>.samples.jsonl + <name>.summary.json per benchmark")
    args = p.parse_args(argv)
    config = giftlab.cli.setup(args)
    from giftlab.models import local_checkpoint

    model = local_checkpoint(args.model)  # a folder, or a hub id's snapshot (the local cache when offline)
    generators: dict = {}  # one model load per job, shared by every benchmark that samples alike
    if "benchmarks" not in config:
        if not (args.samples and args.summary):
            raise ConfigError("evaluate: give --samples and --summary (one benchmark) or a `benchmarks` config")
        bench_file = Path(args.benchmark_file[0]) if args.benchmark_file else None
        remove_stale_temps(args.samples, args.summary)  # what killed attempts of this job left
        evaluate_benchmark(config, model, bench_file, Path(args.samples), Path(args.summary), generators)
        return
    if not args.out_dir:
        raise ConfigError("evaluate: a `benchmarks` config writes to --out-dir")
    files = {}
    for item in args.benchmark_file:
        name, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"evaluate: --benchmark-file {item!r}: expected NAME=FILE with a `benchmarks` config")
        files[name] = Path(path)
    from giftlab.evaluation.resume import FinishedBenchmarks, work_dir_for
    from giftlab.jobs import EvalSettings

    out = Path(args.out_dir)
    finished = FinishedBenchmarks(work_dir_for(out), model)  # a retry skips the benchmarks an earlier try finished
    for name in config["benchmarks"]:
        settings, paths = EvalSettings.of_benchmark(config, name), (out / f"{name}.samples.jsonl",
                                                                     out / f"{name}.summary.json")
        remove_stale_temps(*paths)  # what killed attempts of this job left
        if finished.restore(name, settings, files.get(name), *paths):
            log.info("%s: finished by an earlier try of this job (%s), kept", name, finished.dir)
            continue
        evaluate_benchmark(settings, model, files.get(name), *paths, generators,
                           generation_log=finished.generation_log(name, settings, files.get(name)))
        finished.keep(name, settings, files.get(name), *paths)
    finished.clear()


if __name__ == "__main__":
    giftlab.cli.run(main)
