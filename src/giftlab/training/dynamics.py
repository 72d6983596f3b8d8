"""RL dynamics (paper Figure 3 / Appendix C): the live policy's pass@1 during GRPO.

With ``grpo.eval_every`` > 0 and a benchmark file, :class:`DynamicsCallback` measures pass@1 on ``grpo.eval_problems``
problems of the benchmark (``grpo.eval_subset: random``: a fixed seeded sample, the same for every run;
:func:`dynamics_problems`) at step 0, every ``eval_every`` optimiser steps and at the end;
:func:`giftlab.training.grpo.train_grpo` adds its rows to the run's metrics (``"dynamics"``), which Figure 3 draws.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Mapping

from transformers import TrainerCallback

from giftlab.cli import ConfigError
from giftlab.data import render_prompt
from giftlab.io import write_text_atomic
from giftlab.profiling import emit
from giftlab.provenance import config_hash
from giftlab.training.sharded import gathered_for_generation, rank_and_world

log = logging.getLogger(__name__)


DYNAMICS_DEFAULTS = {"eval_every": 0, "eval_problems": 64, "eval_subset": "random", "eval_samples": 4,
                     "eval_temperature": 0.6, "eval_batch_size": 64}
#: ``grpo.eval_subset``: which ``eval_problems`` problems of the benchmark the RL dynamics evaluate.
DYNAMICS_SUBSETS = ("random", "first")
#: The seed of the ``random`` subset: one sample for every run, seed and resume, so the curves compare.
DYNAMICS_SUBSET_SEED = 0


def dynamics_settings(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The RL-dynamics settings from the ``grpo`` section, or ``None`` when switched off.

    Keys (all optional): ``eval_every`` (optimiser steps between evaluations; 0 or missing =
    off), ``eval_problems`` (N benchmark problems, default 64), ``eval_subset`` (which N:
    ``random``, a fixed seeded sample, the default; ``first``, the first N: :func:`dynamics_problems`),
    ``eval_samples`` (samples per problem, default 4), ``eval_temperature`` (default 0.6, the
    evaluation temperature), ``eval_max_new_tokens`` (default ``max_completion_length``),
    ``eval_batch_size`` (generation rows per batch, default 64).
    """
    every = int(cfg.get("eval_every") or 0)
    if every <= 0:
        return None
    out = {k: v if cfg.get(k) is None else cfg[k] for k, v in DYNAMICS_DEFAULTS.items()}
    out["eval_every"] = every
    out["eval_max_new_tokens"] = int(cfg.get("eval_max_new_tokens") or cfg["max_completion_length"])
    for key in ("eval_problems", "eval_samples", "eval_batch_size", "eval_max_new_tokens"):
        if int(out[key]) < 1:
            raise ConfigError(f"config error: grpo.{key} must be >= 1, got {out[key]}")
        out[key] = int(out[key])
    if out["eval_subset"] not in DYNAMICS_SUBSETS:
        raise ConfigError(f"config error: grpo.eval_subset must be one of {', '.join(DYNAMICS_SUBSETS)}, "
                          f"got {out['eval_subset']!r}")
    out["eval_temperature"] = float(out["eval_temperature"])
    if out["eval_temperature"] < 0:
        raise ConfigError(f"config error: grpo.eval_temperature must be >= 0, got {out['eval_temperature']}")
    return out


def read_dynamics(path: Path, up_to_step: int | None = None) -> list[dict]:
    """Rows of a dynamics log, one per step (the last row of a step wins), sorted by step.

    ``up_to_step``: drop rows measured after that step (after a resume from an earlier checkpoint
    those policies are trained again, so their rows are recomputed).
    """
    if not path.exists():
        return []
    rows: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a torn last line of a killed job
            continue
        if up_to_step is None or row["step"] <= up_to_step:
            rows[int(row["step"])] = row
    return [rows[k] for k in sorted(rows)]


def rewrite_rows(path: Path, rows: list[dict]) -> None:
    """Replace ``path`` by ``rows`` (JSON Lines) atomically. Every process of a multi-GPU job rewrites the step and
    dynamics logs on resume, each through its own temporary file (one shared name let a process rename away the
    file another was about to rename: FileNotFoundError)."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


class DynamicsCallback(TrainerCallback):
    """pass@1 of the live policy during RL: at step 0, every ``eval_every`` steps, and at the last step (before its
    checkpoint, so the run's last checkpoint holds every row).

    Each evaluation wraps the trainer's model with :meth:`HFGenerator.from_model` (in eval mode,
    without gradients; the previous train/eval mode is restored afterwards), samples
    ``eval_samples`` completions per problem at ``eval_temperature`` with the run seed (per-sample
    seeds, so every evaluation of a run uses the same random streams and touches no global RNG:
    training is unaffected), and grades them with ``grade_fn`` (the reward's grading pool).

    Rows are appended to ``path`` (in the work dir, next to ``steps.jsonl``) as they are made;
    on resume from checkpoint-S the rows up to S are kept and later ones dropped, and a step that
    already has a row is not evaluated again.

    Several processes (the paper's 8-GPU FSDP job) share the problems: process r generates and grades every
    ``world``-th problem from the r-th (:func:`dynamics_share`), the samples are gathered and the row is computed over
    all of them in benchmark order, so it equals one process's (each sample's randomness depends only on its prompt,
    seed and index): every process generating every problem would take 8x the decode steps, each gathering the
    sharded weights (at 7B and 8,192 tokens, hours per evaluation).
    """

    def __init__(self, path: Path, records: list[dict], tokenizer, grade_fn, settings: Mapping[str, Any],
                 seed: int, resume_step: int | None = None, prompt_fn=None):

        if not records:
            raise ValueError("DynamicsCallback: the dynamics benchmark has no problems")
        self.path = Path(path)
        self.records = list(records)
        self.tokenizer = tokenizer
        self.grade_fn = grade_fn
        self.settings = dict(settings)
        self.seed = int(seed)
        self.prompt_fn = prompt_fn or (lambda r: render_prompt(tokenizer, r["prompt"]))
        self.session_grading: dict[str, int] = {}  # what this process's evaluations cost the grading pool
        # Rows measured on other problems or with other settings (the benchmark file is not part
        # of the job config that guards the work dir) are not reused after a resume.
        self.tag = config_hash({"problems": [[r["id"], r["prompt"], r["gold"]] for r in self.records],
                                "settings": self.settings, "seed": self.seed})
        if resume_step is None:
            self.rows: list[dict] = []
            self.path.unlink(missing_ok=True)
        else:
            self.rows = [r for r in read_dynamics(self.path, up_to_step=resume_step)
                         if r.get("eval_tag") == self.tag]
            rewrite_rows(self.path, self.rows)

    @property
    def grading_stats(self) -> dict[str, int]:
        """The grading counters of every evaluation of the run (its rows, kept across resumes)."""
        total: dict[str, int] = {}
        for row in self.rows:
            for k, v in (row.get("grading") or {}).items():
                total[k] = total.get(k, 0) + v
        return total

    def _done(self, step: int) -> bool:
        return any(r["step"] == step for r in self.rows)

    def evaluate_model(self, model, step: int, max_steps: int, write: bool = True) -> dict:
        """Evaluate ``model`` now and record the row for ``step`` (appended to the log if ``write``)."""
        import torch

        from giftlab.evaluation.generation import HFGenerator
        from giftlab.evaluation.runner import evaluate, summarize

        cfg = self.settings
        rank, world = rank_and_world()
        share, n_real = dynamics_share(self.records, rank, world)
        n_samples = cfg["eval_samples"]
        before = dict(getattr(getattr(self.grade_fn, "__self__", None), "stats", {}) or {})
        was_training = model.training
        t0 = time.perf_counter()
        model.eval()
        try:
            # every process generates in step (generate's synced_gpus under FSDP): as many prompts on each, the
            # padding's samples not graded; FSDP1 gathers the root unit first
            with torch.no_grad(), gathered_for_generation(model) as gen_model:
                generator = HFGenerator.from_model(gen_model, self.tokenizer, batch_size=cfg["eval_batch_size"])
                rows, summary = evaluate(generator, share, n_samples=n_samples,
                                         temperature=cfg["eval_temperature"],
                                         max_new_tokens=cfg["eval_max_new_tokens"], seed=self.seed,
                                         grade_fn=_graded_first(self.grade_fn, n_real * n_samples), ks=(1,),
                                         prompt_fn=self.prompt_fn, progress=False)
        finally:
            model.train(was_training)
        after = dict(getattr(getattr(self.grade_fn, "__self__", None), "stats", {}) or {})
        grading = {k: v - before.get(k, 0) for k, v in after.items()}
        for k, v in grading.items():
            self.session_grading[k] = self.session_grading.get(k, 0) + v
        if world > 1:  # every process's samples, in benchmark order; the grading counts of all of them
            shares: list = [None] * world
            torch.distributed.all_gather_object(shares, (rows[:n_real * n_samples], grading))
            by_id: dict[str, list] = {r["id"]: [] for r in self.records}
            grading = {}
            for share_rows, share_grading in shares:
                for r in share_rows:
                    by_id[r["prompt_id"]].append(r)
                for k, v in share_grading.items():
                    grading[k] = grading.get(k, 0) + v
            rows = [r for rec in self.records for r in by_id[rec["id"]]]
            summary = summarize(rows, [[r["correct"] for r in by_id[rec["id"]]] for rec in self.records], (1,),
                                n_samples, cfg["eval_temperature"], 1.0, cfg["eval_max_new_tokens"], self.seed)
        row = {"step": int(step), "progress": step / max_steps if max_steps and max_steps > 0 else None,
               "pass@1": summary["pass@1"], "pass@1_ci95": summary["pass@1_ci95"],
               "n_problems": summary["n_problems"], "n_samples": summary["n_samples"],
               "temperature": summary["temperature"], "max_new_tokens": summary["max_new_tokens"],
               "mean_response_tokens": summary["mean_response_tokens"],
               "truncated": summary["truncated"], "timeouts": summary["timeouts"],
               "seconds": round(time.perf_counter() - t0, 3), "eval_tag": self.tag, "grading": grading}
        emit("grpo/train/dynamics", row["seconds"])
        self.rows = [r for r in self.rows if r["step"] != row["step"]] + [row]
        self.rows.sort(key=lambda r: r["step"])
        if write:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        log.info("RL dynamics: step %d/%s pass@1 = %.4f (%d problems x %d samples, %.1fs)", step,
                 max_steps, row["pass@1"], row["n_problems"], row["n_samples"], row["seconds"])
        return row

    def _maybe(self, state, model) -> None:
        if model is None or self._done(state.global_step):
            return
        # Every process generates (sharded models need all ranks); only the main one writes.
        self.evaluate_model(model, state.global_step, state.max_steps, write=state.is_world_process_zero)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            self._maybe(state, model)
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # the last step here too, before its checkpoint is saved: a run stopped after that checkpoint (preempted at its
        # last step, killed in this evaluation or the export) finishes from it without training (train_or_finish),
        # so on_train_end never comes again and the final policy's row was lost
        if state.global_step % self.settings["eval_every"] == 0 or state.global_step >= state.max_steps > 0:
            self._maybe(state, model)
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._maybe(state, model)
        return control


def dynamics_share(records: list[dict], rank: int, world: int) -> tuple[list[dict], int]:
    """Process ``rank``'s problems of ``world``: every ``world``-th from the ``rank``-th, then copies of the first
    problem (or of the benchmark's first) until each process has as many as the largest share, so that sharded
    processes make the same generate calls; returns (the share, how many of it are real)."""
    own = list(records[rank::world])
    size = -(-len(records) // world)
    return own + [(own or records)[0]] * (size - len(own)), len(own)


def _graded_first(grade_fn, n: int):
    """``grade_fn`` over the first ``n`` responses only; the rest (a share's padding) count as ungraded failures."""
    from types import SimpleNamespace

    def grade(responses, golds):
        padding = [SimpleNamespace(correct=False, extracted=None, timed_out=False)] * (len(responses) - n)
        return [*grade_fn(responses[:n], golds[:n]), *padding] if n else padding

    grade.wants_records = getattr(grade_fn, "wants_records", False)
    return grade


def dynamics_records(path: str | Path) -> list[dict]:
    """The RL-dynamics benchmark, read as the evaluation reads it: a registered math benchmark's copy, named as
    ``eval.benchmark_dir`` names it (``<name>`` + any suffixes: ``math500.jsonl.gz``, ``math500.parquet``, a
    folder ``math500/``), through that benchmark's loader and checks (any format :mod:`giftlab.rowfiles` reads,
    upstream field names included); any other file must be JSON Lines math records ``{id, prompt, gold, kind}``."""
    from giftlab.evaluation.benchmarks import BENCHMARKS, load_benchmark, load_jsonl_records

    name = Path(path).name.split(".")[0]
    if name in BENCHMARKS and BENCHMARKS[name].kind == "math":
        return load_benchmark(name, path=path)
    return load_jsonl_records(path)


def dynamics_problems(records: list[dict], n: int, subset: str = "random") -> list[dict]:
    """The ``n`` problems of a benchmark's records that the RL dynamics evaluate, in benchmark order.

    ``random``: a sample drawn by a generator of its own seeded :data:`DYNAMICS_SUBSET_SEED`, so every run, seed
    and resume evaluates the same problems and no global random state moves (training is unaffected); ``first``:
    the first ``n`` (a file sorted by difficulty, like the tiny world's ``tiny_id.jsonl``, gives its easiest).
    A benchmark of ``n`` problems or fewer is evaluated whole.
    """
    if subset not in DYNAMICS_SUBSETS:
        raise ValueError(f"dynamics subset {subset!r}: expected one of {', '.join(DYNAMICS_SUBSETS)}")
    if subset == "first" or n >= len(records):
        return list(records[:n])
    return [records[i] for i in sorted(random.Random(DYNAMICS_SUBSET_SEED).sample(range(len(records)), n))]


def dynamics_plan(cfg: Mapping[str, Any], benchmark: str | Path | None
                   ) -> tuple[dict[str, Any] | None, list[dict] | None, dict[str, Any] | None]:
    """The RL dynamics' settings (None: off), the problems they evaluate and the metrics' ``"dynamics_subset"``."""
    dyn = dynamics_settings(cfg)
    if dyn is not None and benchmark is None:
        log.warning("grpo.eval_every = %d but no dynamics benchmark was given: RL dynamics are off",
                    dyn["eval_every"])
        return None, None, None
    if dyn is None:
        return None, None, None
    whole = dynamics_records(benchmark)
    records = dynamics_problems(whole, dyn["eval_problems"], dyn["eval_subset"])
    subset = {"subset": dyn["eval_subset"], "seed": DYNAMICS_SUBSET_SEED if dyn["eval_subset"] == "random" else None,
              "problems": len(records), "of": len(whole), "ids": [r["id"] for r in records]}
    return dyn, records, subset
