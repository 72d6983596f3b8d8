"""One benchmark of an evaluation job (scripts/evaluate.py): load and check its records, sample with the job's
model, grade, and write its samples and summary (with the benchmark's checks, the grading settings and the phase
timings the profile reads).
"""

from __future__ import annotations

import functools
import json
import logging
from contextlib import contextmanager
from pathlib import Path

from giftlab.io import write_text_atomic
from giftlab.profiling import emit, matmul_flops, phase
from giftlab.provenance import path_sha256, write_result

log = logging.getLogger("evaluate")


@contextmanager
def grading_pool(workers: int, timeout: float, percent_rule: bool = True):
    """The grader: ``giftlab.rewards.GradingPool`` (tests replace this function)."""
    from giftlab.rewards import GradingPool

    with GradingPool(workers=workers, timeout=timeout, percent_rule=percent_rule) as pool:
        yield pool.grade_many


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

    summary = {"benchmark": job.benchmark, "model": str(model), "model_sha256": model_sha256(model),
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


@functools.lru_cache(maxsize=None)
def model_sha256(model) -> str | None:
    """16 hex digits of :func:`path_sha256` of the weights folder evaluated (once per job: its benchmarks share it),
    which ties each row of a table to the exact weights behind it; None for a hub id."""
    return path_sha256(model)[:16] if Path(model).is_dir() else None


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
