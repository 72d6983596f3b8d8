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

import functools
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import giftlab.cli
from giftlab.cli import ConfigError
from giftlab.io import remove_stale_temps, write_text_atomic
from giftlab.profiling import emit, matmul_flops, phase
from giftlab.provenance import path_sha256, write_result

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


def evaluate_benchmark(config: dict, model: Path, bench_file: Path | None, samples_path: Path, summary_path: Path,
                       generators: dict, generation_log=None) -> None:
    """Sample, grade and write one benchmark's samples and summary; ``generators`` caches loaded models;
    ``generation_log`` (giftlab.evaluation.resume.GenerationLog) keeps the samples generated so far for a retry."""
    from giftlab.evaluation.benchmarks import BENCHMARKS, benchmark_info, load_benchmark_checked
    from giftlab.evaluation.generation import make_generator, render_prompt
    from giftlab.evaluation.grading import code_settings, make_grader
    from giftlab.evaluation.runner import evaluate
    from giftlab.jobs import EvalSettings

    overrides = EvalSettings.overrides(config)
    if overrides:
        config = {**config, **overrides}  # as recorded in the summary's provenance
    job = EvalSettings.from_config(config)

    records, checks = load_benchmark_checked(job.benchmark, path=bench_file, limit=job.limit, **job.load_options())
    kinds = sorted({r["kind"] for r in records})
    kind = kinds[0] if len(kinds) == 1 else "auto"
    code = code_settings(job.code_timeout, job.code_memory_mb, job.code_workers)
    # the pool keeps its (workers, timeout) call form when the paper's default applies
    math_pool = grading_pool if job.percent_rule else functools.partial(grading_pool, percent_rule=False)
    log.info("%s: %d problems x %d samples, T=%s, backend=%s", job.benchmark, len(records),
             job.n_samples, job.temperature, job.backend)

    engine = job.generator_kwargs()
    key = json.dumps(engine, sort_keys=True)
    if key not in generators:
        release_generators(generators)  # one model at a time: a second vLLM engine finds no free GPU memory
        with phase("evaluate/load"):
            generators[key] = make_generator(model, **engine)
    generator = generators[key]
    tokenizer = generator.tokenizer
    prompt_fn = lambda r: render_prompt(tokenizer, r["prompt"], job.chat_template)  # noqa: E731
    with make_grader(kind, math_workers=job.grading_workers, math_timeout=float(job.grading_timeout),
                     math_pool=math_pool, code_timeout=code["code_timeout"],
                     code_memory_mb=code["code_memory_mb"],
                     code_workers=code["code_workers"]) as grade_fn:
        if hasattr(grade_fn, "check_references"):  # code benchmarks: the canonical solutions run, before sampling
            grade_fn.check_references(records)
        samples, summary = evaluate(
            generator, records, n_samples=job.n_samples, temperature=float(job.temperature), top_p=float(job.top_p),
            max_new_tokens=job.max_new_tokens, seed=job.seed, grade_fn=grade_fn, ks=[int(k) for k in job.ks],
            prompt_fn=prompt_fn, ci_resamples=job.ci_resamples, log=generation_log,
            save_every=job.save_every_prompts)
    log_phases(job.benchmark, generator, records, summary, prompt_fn)

    summary = {"benchmark": job.benchmark, "model": str(model),
               "benchmark_file": str(bench_file) if bench_file else None,
               "benchmark_sha256": path_sha256(bench_file)[:16] if bench_file else None,  # a file or a folder
               "backend": generator.backend, "kind": kind,
               "benchmark_source": benchmark_info(job.benchmark) if job.benchmark in BENCHMARKS else None,
               "benchmark_checks": checks,
               "per_benchmark_overrides": overrides or None, **summary}
    if "math" in kinds:
        summary["math_grading"] = {"percent_rule": job.percent_rule}
    if "code" in kinds:
        summary["code_limits"] = code
        summary["sandbox_guards"] = getattr(grade_fn, "guards", None) or None
    write_text_atomic(samples_path, "".join(json.dumps(r) + "\n" for r in samples))
    write_result(summary_path, summary, config, seed=job.seed)
    log.info("%s: %s", job.benchmark,
             ", ".join(f"{k}={v:.3f}" for k, v in summary.items() if k.startswith("pass@")
                       and isinstance(v, float)))


def release_generators(generators: dict) -> None:
    """Drop the models a job loaded for earlier benchmarks, before one whose engine settings differ (a per_benchmark
    override) loads: vLLM refuses to start while free GPU memory is below gpu_memory_utilization (0.9) of the card,
    which the engine still held would leave it."""
    if not generators:
        return
    import gc

    import torch

    for generator in generators.values():
        getattr(generator, "close", lambda: None)()  # HF generators hold nothing outside this process
    generators.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def log_phases(benchmark: str, generator, records, summary: dict, prompt_fn) -> None:
    """The job log's phase lines (giftlab.profiling): generation with its FLOPs (each prompt copy's prefill and
    each generated token, one forward each; HF models only), and grading."""
    fields = {"benchmark": benchmark}
    module = getattr(generator, "model", None)
    if hasattr(module, "modules"):
        copies = 1 if summary["temperature"] == 0 else summary["n_samples"]
        prompt = copies * sum(len(generator.tokenizer(prompt_fn(r)).input_ids) for r in records)
        fields["tokens"] = prompt + round(summary["mean_response_tokens"] * summary["n_responses"])
        fields["flops"] = matmul_flops(module, fields["tokens"])
    emit("evaluate/generate", summary["generation_seconds"], **fields)
    emit("evaluate/grade", summary["grading_seconds"], benchmark=benchmark)


if __name__ == "__main__":
    giftlab.cli.run(main)
