"""Evaluate one model on its benchmarks: sample, grade, write samples.jsonl + summary.json per benchmark.

One job per model (rule `evaluate*`): the config's ``benchmarks`` maps each benchmark to its settings, the model is
loaded once, and each benchmark's files go to ``--out-dir``. A config with a single ``benchmark`` and
``--samples/--summary`` evaluates just that one:

    python scripts/evaluate.py --config '{"seed": 0, "n_samples": 8, "temperature": 0.6,
        "max_new_tokens": 64, "backend": "auto", "grading_timeout": 10, "benchmark": "tiny_id"}' \
      --model results/sft/... --benchmark-file data/tiny/benchmarks/tiny_id.jsonl \
      --samples results/eval/.../tiny_id.samples.jsonl --summary results/eval/.../tiny_id.summary.json

Config keys (defaults): seed (0), n_samples (8), temperature (0.6), top_p (1.0),
max_new_tokens (required), backend ("auto"), batch_size (32, HF rows per forward),
grading_timeout (10), grading_workers (2), benchmark (required), ks ([1, 2, 4, 8]),
chat_template ("auto": use it when the tokenizer has one), seed_scheme ("hash"), limit (none),
ci_resamples (1000), stop_token_ids ([]), percent_rule (true: OMI's grading rule that a number also matches
gold/100 and gold*100, e.g. 0.5 == 50, as in GIFT; recorded in the summary's math_grading).
Benchmarks of other kinds (multiple_choice, code): choice_shuffle_seed (0, GPQA's option
shuffle), code_timeout (10 s wall clock per program; also its CPU-time limit), code_memory_mb
(2048), code_workers (2) -- pinned in the config and recorded in the summary. duplicates ("drop": a problem
read twice is evaluated once, the count in the summary's benchmark_checks; "error": refuse the file).
per_benchmark ({}): overrides per benchmark name, e.g. {"aime24": {"n_samples": 32,
"ks": [1, 8, 32]}} (any key above except benchmark).

    python scripts/evaluate.py --config '{"seed": 0, "benchmarks": {"gsm8k": {...}, "math500": {...}}}' \
      --model models/rl/qwen/sft --benchmark-file gsm8k=data/benchmarks/gsm8k.jsonl \
      --benchmark-file math500=data/benchmarks/math500.jsonl --out-dir results/eval/rl/qwen/sft
"""

from __future__ import annotations

import functools
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import giftlab.cli
from giftlab.cli import ConfigError
from giftlab.io import write_text_atomic
from giftlab.provenance import file_sha256, write_result

log = logging.getLogger("evaluate")


@contextmanager
def grading_pool(workers: int, timeout: float, percent_rule: bool = True):
    """The grader: ``giftlab.rewards.GradingPool`` (tests replace this function)."""
    from giftlab.rewards import GradingPool

    with GradingPool(workers=workers, timeout=timeout, percent_rule=percent_rule) as pool:
        yield pool.grade_many


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
    common = {k: v for k, v in config.items() if k != "benchmarks"}
    out = Path(args.out_dir)
    for name, settings in config["benchmarks"].items():
        job = {**common, **settings, "benchmark": name}
        evaluate_benchmark(job, model, files.get(name), out / f"{name}.samples.jsonl", out / f"{name}.summary.json",
                           generators)


def evaluate_benchmark(config: dict, model: Path, bench_file: Path | None, samples_path: Path, summary_path: Path,
                       generators: dict) -> None:
    """Sample, grade and write one benchmark's samples and summary; ``generators`` caches loaded models."""
    from giftlab.evaluation.benchmarks import BENCHMARKS, benchmark_info, load_benchmark_checked
    from giftlab.evaluation.generation import make_generator, render_prompt
    from giftlab.evaluation.grading import code_settings, make_grader
    from giftlab.evaluation.runner import evaluate

    overrides = (config.get("per_benchmark") or {}).get(config.get("benchmark"), {})
    if overrides:
        if "benchmark" in overrides:
            raise ConfigError("config: per_benchmark overrides may not change 'benchmark'")
        config = {**config, **overrides}

    for key in ("benchmark", "max_new_tokens"):
        if key not in config:
            raise ConfigError(f"config: missing key {key!r}")
    seed = int(config.get("seed", 0))
    n_samples = int(config.get("n_samples", 8))
    temperature = float(config.get("temperature", 0.6))
    top_p = float(config.get("top_p", 1.0))
    max_new_tokens = int(config["max_new_tokens"])
    ks = [int(k) for k in config.get("ks", [1, 2, 4, 8])]
    if n_samples < 1:
        raise ConfigError(f"config: n_samples must be >= 1, got {n_samples}")
    if any(k < 1 or k > n_samples for k in ks):
        raise ConfigError(f"config: ks {ks}: every k must be in [1, n_samples = {n_samples}]")

    records, checks = load_benchmark_checked(config["benchmark"], path=bench_file, limit=config.get("limit"),
                                             duplicates=config.get("duplicates", "drop"),
                                             shuffle_seed=int(config.get("choice_shuffle_seed", 0)))
    kinds = sorted({r["kind"] for r in records})
    kind = kinds[0] if len(kinds) == 1 else "auto"
    code = code_settings(config.get("code_timeout"), config.get("code_memory_mb"),
                         config.get("code_workers"))
    percent_rule = config.get("percent_rule", True)
    if not isinstance(percent_rule, bool):
        raise ConfigError(f"config: percent_rule must be true or false, got {percent_rule!r}")
    # the pool keeps its (workers, timeout) call form when the paper's default applies
    math_pool = grading_pool if percent_rule else functools.partial(grading_pool, percent_rule=False)
    log.info("%s: %d problems x %d samples, T=%s, backend=%s", config["benchmark"], len(records),
             n_samples, temperature, config.get("backend", "auto"))

    engine = {"backend": config.get("backend", "auto"), "batch_size": int(config.get("batch_size", 32)),
              "stop_token_ids": tuple(config.get("stop_token_ids", ())),
              "seed_scheme": config.get("seed_scheme", "hash"), **(config.get("vllm") or {})}
    key = json.dumps(engine, sort_keys=True)
    if key not in generators:
        generators[key] = make_generator(model, **engine)
    generator = generators[key]
    chat = config.get("chat_template", "auto")
    tokenizer = generator.tokenizer
    with make_grader(kind, math_workers=int(config.get("grading_workers", 2)),
                     math_timeout=float(config.get("grading_timeout", 10)),
                     math_pool=math_pool, code_timeout=code["code_timeout"],
                     code_memory_mb=code["code_memory_mb"],
                     code_workers=code["code_workers"]) as grade_fn:
        samples, summary = evaluate(
            generator, records, n_samples=n_samples, temperature=temperature, top_p=top_p,
            max_new_tokens=max_new_tokens, seed=seed, grade_fn=grade_fn, ks=ks,
            prompt_fn=lambda r: render_prompt(tokenizer, r["prompt"], chat),
            ci_resamples=int(config.get("ci_resamples", 1000)))

    summary = {"benchmark": config["benchmark"], "model": str(model),
               "benchmark_file": str(bench_file) if bench_file else None,
               "benchmark_sha256": file_sha256(bench_file)[:16] if bench_file else None,
               "backend": generator.backend, "kind": kind,
               "benchmark_source": (benchmark_info(config["benchmark"])
                                    if config["benchmark"] in BENCHMARKS else None),
               "benchmark_checks": checks,
               "per_benchmark_overrides": overrides or None, **summary}
    if "math" in kinds:
        summary["math_grading"] = {"percent_rule": percent_rule}
    if "code" in kinds:
        summary["code_limits"] = code
        summary["sandbox_guards"] = getattr(grade_fn, "guards", None) or None
    write_text_atomic(samples_path, "".join(json.dumps(r) + "\n" for r in samples))
    write_result(summary_path, summary, config, seed=seed)
    log.info("%s: %s", config["benchmark"],
             ", ".join(f"{k}={v:.3f}" for k, v in summary.items() if k.startswith("pass@")
                       and isinstance(v, float)))


if __name__ == "__main__":
    giftlab.cli.run(main)
