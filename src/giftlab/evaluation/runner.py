"""Run a generator over benchmark records, grade every sample, summarise (pass@k, CI, lengths)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from giftlab.evaluation.generation import Generator
from giftlab.stats import pass_at_1_ci, pass_at_k

if TYPE_CHECKING:
    from giftlab.evaluation.resume import GenerationLog

# grade_fn(responses, golds) -> results with .correct, .extracted, .timed_out (and optional .error,
# .detail), e.g. giftlab.rewards.GradingPool(...).grade_many. A grade_fn with a true
# ``wants_records`` attribute receives the records themselves instead of the gold strings
# (multiple-choice and code graders, see giftlab.evaluation.grading.make_grader).
GradeFn = Callable[[list[str], list[str]], list[Any]]
DEFAULT_PROMPTS_PER_CALL = 64  # a generator without ``prompts_per_call``: progress and timings every 64 prompts


def evaluate(generator: Generator, records: Sequence[dict], n_samples: int, temperature: float,
             max_new_tokens: int, seed: int, grade_fn: GradeFn, ks: Sequence[int] = (1, 2, 4, 8),
             top_p: float = 1.0, prompt_fn: Callable[[dict], str] | None = None,
             chunk_size: int | None = None, ci_resamples: int = 1000, progress: bool = True,
             log: GenerationLog | None = None, save_every: int = 0) -> tuple[list[dict], dict]:
    """Generate ``n_samples`` per record, grade them, and return ``(samples, summary)``.

    ``prompt_fn(record)`` gives the model input (default: ``record["prompt"]``; chat templating
    is the caller's job, e.g. ``lambda r: render_prompt(tok, r["prompt"])``). Records are
    generated ``chunk_size`` prompts at a time (default: the generator's ``prompts_per_call``, 64 for
    HF, all of them for vLLM, whose scheduler batches continuously: a chunk would wait for its
    longest sample; progress bar on stderr); results do not depend on the chunking because every
    sample has its own seed. A sample row's ``seconds`` is its chunk's
    generation wall time divided by the chunk's sample count (batched generation has no
    per-sample time). Grading runs once over all samples at the end.

    ``log`` (giftlab.evaluation.resume.GenerationLog): the problems an earlier try generated are taken from it and
    each chunk is recorded in it, so a killed job's retry generates only the rest (``resumed_problems`` in the
    summary; ``generation_seconds`` counts this try's generation only). A generator that takes every prompt at
    once (vLLM) gets ``save_every`` at a time when a log is given (0: all at once).
    """
    from tqdm import tqdm

    if not records:
        raise ValueError("evaluate: no records")
    prompt_fn = prompt_fn or (lambda r: r["prompt"])
    chunk_size = (chunk_size or getattr(generator, "prompts_per_call", DEFAULT_PROMPTS_PER_CALL)
                  or (log is not None and save_every) or len(records))
    prompts = [prompt_fn(r) for r in records]
    generated, seconds = log.read(prompts) if log is not None else ([], [])
    resumed = len(generated)
    t_gen = time.perf_counter()
    bar = tqdm(total=len(records), initial=resumed, desc="generate", unit="prompt", file=sys.stderr,
               disable=not progress)
    for start in range(resumed, len(records), chunk_size):
        chunk = prompts[start:start + chunk_size]
        t0 = time.perf_counter()
        out = generator.generate(chunk, n=n_samples, temperature=temperature, top_p=top_p,
                                 max_new_tokens=max_new_tokens, seed=seed)
        per_sample = (time.perf_counter() - t0) / max(1, len(chunk) * n_samples)
        if len(out) != len(chunk) or any(len(s) != n_samples for s in out):
            raise RuntimeError("generator returned the wrong number of samples")
        if log is not None:
            log.append(chunk, out, per_sample)
        generated.extend(out)
        seconds.extend([per_sample] * len(chunk))
        bar.update(len(chunk))
    bar.close()
    gen_seconds = time.perf_counter() - t_gen

    responses = [s.text for per in generated for s in per]
    if getattr(grade_fn, "wants_records", False):
        golds = [r for r in records for _ in range(n_samples)]
    else:
        golds = [r["gold"] for r in records for _ in range(n_samples)]
    t_grade = time.perf_counter()
    grades = list(grade_fn(responses, golds))
    grade_seconds = time.perf_counter() - t_grade
    if len(grades) != len(responses):
        raise RuntimeError(f"grade_fn returned {len(grades)} results for {len(responses)} responses")

    rows, matrix = [], []
    it = iter(grades)
    for rec, per, secs in zip(records, generated, seconds):
        flags = []
        for i, s in enumerate(per):
            g = next(it)
            timed_out = bool(getattr(g, "timed_out", False))
            correct = bool(g.correct) and not timed_out  # a timeout always scores 0
            flags.append(correct)
            rows.append({
                "prompt_id": rec["id"], "sample_index": i, "seed": s.seed, "text": s.text,
                "extracted": None if g.extracted is None else str(g.extracted),
                "correct": correct, "timed_out": timed_out,
                "grading_error": getattr(g, "error", None),
                "grade_detail": getattr(g, "detail", None),
                # EvalPlus records: the base tests alone (``correct`` is base and plus, HumanEval+/MBPP+)
                **({"base_correct": bool(g.base)} if getattr(g, "base", None) is not None else {}),
                "num_tokens": s.num_tokens, "finish_reason": s.finish_reason, "seconds": secs,
            })
        matrix.append(flags)
    return rows, {**summarize(rows, matrix, ks, n_samples, temperature, top_p, max_new_tokens, seed,
                              ci_resamples, gen_seconds, grade_seconds), "resumed_problems": resumed}


def _base_pass_at_1(rows: list[dict]) -> dict:
    """EvalPlus benchmarks: pass@1 on the base tests only (HumanEval / MBPP), next to the plus score."""
    by_prompt: dict[str, list[bool]] = {}
    for r in rows:
        if "base_correct" in r:
            by_prompt.setdefault(r["prompt_id"], []).append(bool(r["base_correct"]))
    if not by_prompt:
        return {}
    return {"base_pass@1": float(np.mean([sum(f) / len(f) for f in by_prompt.values()]))}


def summarize(rows: list[dict], matrix: list[list[bool]], ks: Sequence[int], n_samples: int,
              temperature: float, top_p: float, max_new_tokens: int, seed: int,
              ci_resamples: int = 1000, gen_seconds: float | None = None,
              grade_seconds: float | None = None) -> dict:
    per_problem = [sum(f) / len(f) for f in matrix]
    lo, hi = pass_at_1_ci(matrix, n_resamples=ci_resamples, seed=seed)
    by_prompt: dict[str, list] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r["extracted"])
    distinct = [len({e for e in ex if e is not None}) for ex in by_prompt.values()]
    return {
        "n_problems": len(matrix),
        "n_samples": n_samples,
        "n_responses": len(rows),
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        **pass_at_k(matrix, ks),
        "pass@1_ci95": [lo, hi],
        "pass@1_ci_resamples": ci_resamples,
        **_base_pass_at_1(rows),
        "accuracy_std_over_problems": float(np.std(per_problem)),
        "mean_response_tokens": float(np.mean([r["num_tokens"] for r in rows])),
        "mean_response_chars": float(np.mean([len(r["text"]) for r in rows])),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
        "timeouts": sum(bool(r["timed_out"]) for r in rows),
        "grading_errors": sum(r.get("grading_error") is not None for r in rows),
        "no_answer": sum(r["extracted"] is None for r in rows),
        "mean_distinct_answers": float(np.mean(distinct)),
        "finish_reasons": dict(Counter(r["finish_reason"] for r in rows)),
        "generation_seconds": gen_seconds,
        "grading_seconds": grade_seconds,
    }
