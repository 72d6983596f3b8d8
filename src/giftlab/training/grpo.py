"""GRPO with TRL's ``GRPOTrainer`` from an SFT checkpoint (or the base model, for Direct RL).

The config speaks in the paper's units (prompts per generation batch, prompts per optimiser
update, G samples per prompt); :func:`grpo_arguments` translates them into TRL's batch fields.

RL dynamics (paper Figure 3 / Appendix C): with ``grpo.eval_every`` > 0 and a benchmark file,
:class:`DynamicsCallback` measures the live policy's pass@1 on ``grpo.eval_problems`` problems of the benchmark
(``grpo.eval_subset: random``: a fixed seeded sample, the same for every run; :func:`dynamics_problems`) at step 0,
every ``eval_every`` optimiser steps and at the end, and the metrics dict gains ``"dynamics"`` (one row per
evaluated step).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from transformers import TrainerCallback, set_seed

from giftlab.cli import ConfigError
from giftlab.data import render_prompt, turn_end_ids
from giftlab.io import write_json_atomic, write_text_atomic
from giftlab.jobs import check_dual_clip, check_grpo_batch
from giftlab.profiling import emit, matmul_flops, phase, trl_phases
from giftlab.provenance import config_hash
from giftlab.training.checkpoints import (CompleteMarker, RunIntervals, _distributed, export_model,
                                          last_complete_checkpoint, prepare_work_dir, train_or_finish)
from giftlab.training.gradient_precision import ReduceInFp32, accelerator_config
from giftlab.training.preemption import PreemptionCheckpoint
from giftlab.training.rollout_state import resumable
from giftlab.training.sharded import (accelerate_fsdp, fp32_master_weights, gathered_for_generation, rank_and_world,
                                      trl_reference_in_every_process)
from giftlab.training.tracking import read_step_rows, resolve_report_to, use_tensorboard
from giftlab.training.weight_decay import DecayEveryParameter, with_optimizer_groups

log = logging.getLogger(__name__)


def fsdp_activation_checkpointing() -> bool:
    """Whether this process was launched with FSDP's activation checkpointing (``accelerate launch`` sets this)."""
    return accelerate_fsdp() and os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "false").lower() == "true"


def grpo_arguments(cfg: Mapping[str, Any], work_dir: str | Path, seed: int, world_size: int = 1) -> dict[str, Any]:
    """Map the ``grpo`` config section to ``trl.GRPOConfig`` keyword arguments.

    One generation batch = ``prompts_per_generation`` prompts × G completions; each optimiser
    update consumes ``prompts_per_update`` prompts × G (paper: 128 and 64, so 2 updates per batch),
    split over ``world_size`` processes × ``grad_accum`` micro-batches.
    """
    G = cfg["num_generations"]
    grad_accum = int(cfg.get("grad_accum", 1))
    per_gen, per_update = cfg["prompts_per_generation"], cfg["prompts_per_update"]
    check_grpo_batch(cfg, world_size)
    completions_per_update = per_update * G
    check_dual_clip(cfg)
    use_cpu = not torch.cuda.is_available()
    max_steps = cfg["max_steps"]
    kwargs = dict(
        output_dir=str(work_dir),
        seed=seed,
        data_seed=seed,
        learning_rate=cfg["lr"],
        lr_scheduler_type=cfg.get("lr_scheduler", "constant"),
        warmup_steps=cfg.get("warmup_steps", 0),
        weight_decay=cfg.get("weight_decay", 0.0),
        max_grad_norm=cfg.get("max_grad_norm", 1.0),
        per_device_train_batch_size=completions_per_update // (world_size * grad_accum),
        gradient_accumulation_steps=grad_accum,
        steps_per_generation=(per_gen // per_update) * grad_accum,
        num_generations=G,
        num_iterations=1,
        temperature=cfg.get("temperature", 1.0),
        top_p=1.0,
        top_k=0,
        max_completion_length=cfg["max_completion_length"],
        beta=cfg.get("kl_coef", 0.0),
        epsilon=cfg.get("clip_epsilon", 0.2),
        # VeRL's dual-clip PPO (clip_ratio_c): a negative advantage's loss stops growing once the ratio passes it
        delta=cfg.get("dual_clip"),
        scale_rewards=cfg.get("scale_rewards", "none"),
        loss_type=cfg.get("loss_type", "grpo"),
        use_vllm=bool(cfg.get("use_vllm", False)),
        # stated, not inherited: older TRL releases default to "server" (a separate vLLM server process)
        vllm_mode="colocate",
        # TRL reweights each sequence's loss by exp(Σ trainer − vLLM log-prob) and drops those above 3 by default;
        # E.2's GRPO (VeRL) has no such term. grpo.vllm.importance_sampling_correction turns it on.
        vllm_importance_sampling_correction=False,
        bf16=bool(cfg.get("bf16", False)) and not use_cpu,
        use_cpu=use_cpu,
        # TRL turns this on by default; transformers refuses it beside FSDP's own activation checkpointing
        # (workflow/accelerate/fsdp.yaml), which `accelerate launch` announces in the environment.
        gradient_checkpointing=bool(cfg.get("gradient_checkpointing", False)) and not fsdp_activation_checkpointing(),
        ddp_find_unused_parameters=False,  # every parameter takes part in the loss: skip DDP's extra graph walk
        accelerator_config=accelerator_config(),  # under FSDP: synchronise every micro-batch, as verl
        save_strategy="steps",
        save_steps=max(1, cfg.get("save_steps", 25)),
        # one checkpoint kept, pruned by CompleteMarker(keep=1) once the next is stamped (not save_total_limit,
        # which deletes the stamped one before the new one is stamped)
        save_total_limit=None,
        logging_steps=1,
        # grpo.report_to (default tensorboard); the events' directory is set on the callback (tracking.use_tensorboard)
        report_to=resolve_report_to(cfg.get("report_to"), "grpo.report_to"),
        disable_tqdm=False,
    )
    kwargs.update(vllm_arguments(cfg.get("vllm") or {}))
    if max_steps > 0:
        kwargs["max_steps"] = max_steps
    else:
        kwargs["num_train_epochs"] = 1
    return kwargs


def grpo_trainer_class(method=None, params: Mapping[str, Any] | None = None) -> type:
    """The trainer ``train_grpo`` builds: TRL's GRPOTrainer, with the RL method's mixin when there is one
    (:meth:`giftlab.rl_methods.base.RLMethod.trainer_class`), verl's weight decay (:class:`DecayEveryParameter`)
    and gradient reduction (:class:`ReduceInFp32`), and resumable rollouts
    (:func:`giftlab.training.rollout_state.resumable`)."""
    from trl import GRPOTrainer

    base = method.trainer_class(GRPOTrainer, params or {}) if method else GRPOTrainer
    return resumable(type(base.__name__, (DecayEveryParameter, ReduceInFp32, base), {}))


# grpo.vllm keys -> GRPOConfig fields (colocated vLLM shares each GPU with training)
VLLM_FIELDS = {"max_model_len": "vllm_max_model_length", "gpu_memory_utilization": "vllm_gpu_memory_utilization",
               "sleep_mode": "vllm_enable_sleep_mode", "tensor_parallel_size": "vllm_tensor_parallel_size",
               "importance_sampling_correction": "vllm_importance_sampling_correction"}


def vllm_arguments(vllm: Mapping[str, Any]) -> dict[str, Any]:
    """``grpo.vllm`` as GRPOConfig fields. Without ``max_model_len`` vLLM reserves the model's whole context
    (131k tokens for Llama-3.1) and, at TRL's default memory share, Llama-8B's KV cache does not fit."""
    unknown = sorted(set(vllm) - set(VLLM_FIELDS))
    if unknown:
        raise ConfigError(f"config error: grpo.vllm.{unknown[0]}: unknown key (one of {', '.join(VLLM_FIELDS)})")
    return {VLLM_FIELDS[key]: value for key, value in vllm.items()}


class MathReward:
    """Binary reward from the grading cascade; timeouts and errors score 0 and are counted.

    The counts are the generation batch's, whatever the number of processes: each process grades its own share and
    calls ``log_metric`` once per batch, and TRL (1.16, ``_generate_and_score_completions``) logs the mean of the
    processes' values (their sum / the number of calls); so each process reports its count × the number of
    processes, and the mean is the sum of the counts. Each process's own count, averaged, recorded 1/W of the
    batch's timeouts and errors in the step log (an eighth on the paper's 8 GPUs)."""

    __name__ = "math_reward"

    def __init__(self, pool):
        self.pool = pool

    def __call__(self, prompts, completions, final_answer, log_metric=None, **_):
        results = self.pool.grade_many(list(completions), list(final_answer))
        if log_metric is not None:
            world = rank_and_world()[1]
            log_metric("grading/timeouts", float(sum(r.timed_out for r in results) * world))
            log_metric("grading/errors", float(sum(r.error is not None for r in results) * world))
        return [1.0 if r.correct else 0.0 for r in results]


class JsonlLog(TrainerCallback):
    """Append every logged optimiser step (reward, KL, entropy, lengths, grading timeouts) to a JSONL file.

    Steps only (rows with a ``loss``), as SFT's :class:`~giftlab.training.tracking.StepLog`: the Trainer's
    end-of-training summary describes one ``train()`` call (its runtime, its mean loss over that call's steps), so a
    resumed run's would differ from an uninterrupted one's, and one finished from its last checkpoint has none."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        # every process logs the same (gathered) row: written once
        if logs and "loss" in logs and state.is_world_process_zero:
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"step": state.global_step, **logs}) + "\n")
        return control


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


read_step_log = read_step_rows  # the per-step training log: torn lines and retrained steps dropped


def _write_rows(path: Path, rows: list[dict]) -> None:
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
            _write_rows(self.path, self.rows)

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


def rl_dataset_rows(tokenizer, rl_rows, needs_demonstrations: bool = False, solution_key: str | None = None
                    ) -> list[dict[str, Any]]:
    """The trainer's rows: the rendered prompt and the gold answer; for methods that learn from demonstrations
    (LUFFY, ReLIFT) also the question's index (``row``) and its demonstration (``solution_key``)."""
    rows = []
    for i, r in enumerate(rl_rows):
        row = {"prompt": render_prompt(tokenizer, r["question"]), "final_answer": r["final_answer"]}
        if needs_demonstrations:
            demonstration = r.get(solution_key) if solution_key else None
            if not isinstance(demonstration, str) or not demonstration.strip():
                raise ValueError(f"RL row {i + 1}: no demonstration in column '{solution_key}' "
                                 f"(data.solution_key), which this RL method trains on")
            row.update(row=i, demonstration=demonstration)
        rows.append(row)
    return rows


def demonstrations_that_fit(tokenizer, rows: list[dict[str, Any]], max_completion_length: int,
                            chunk: int = 1024) -> tuple[list[dict[str, Any]], int]:
    """(the rows whose demonstration + EOS is at most ``max_completion_length`` tokens, how many were dropped).

    LUFFY's expert trace and ReLIFT's SFT target are the whole demonstration + EOS, within the completion length
    (the released code trains on OpenR1-Math-46k-8192: traces pre-filtered to 8,192 tokens). A longer one cut to
    fit loses its boxed answer and its EOS: LUFFY scores it 0 and, when a rollout of its group succeeds, pushes the
    expert tokens down; ReLIFT imitates a trace that never answers. Such rows are dropped here, once, before
    training. Tokenised as the trainers tokenise them (no special tokens), ``chunk`` rows at a time."""
    kept, dropped = [], 0
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        ids = tokenizer([r["demonstration"] for r in part], add_special_tokens=False)["input_ids"]
        for row, tokens in zip(part, ids):
            if len(tokens) + 1 <= max_completion_length:  # + EOS
                kept.append(row)
            else:
                dropped += 1
    return kept, dropped


def max_steps_for_kept_rows(cfg: Mapping[str, Any], kept: int, total: int) -> int:
    """``grpo.max_steps`` for a run that trains on ``kept`` of the split's ``total`` rows (LUFFY, ReLIFT after
    demonstrations_that_fit): no prompt is seen more often than plain GRPO sees its prompts.

    An optimiser step takes ``prompts_per_update`` prompts, and a pass is the whole generation batches the rows fill.
    Where ``max_steps`` fits in one pass over all rows (E.2: 1 epoch, 156 steps = 10,000 // 128 × 2), the run stops
    at one pass over the kept rows if that comes first; where plain GRPO makes several passes, the run makes as many
    over its kept rows. ``max_steps`` ≤ 0 (one epoch, the Trainer's count) is kept."""
    steps = int(cfg["max_steps"])
    per_gen = int(cfg["prompts_per_generation"])
    updates = per_gen // int(cfg["prompts_per_update"])
    full_pass, kept_pass = (total // per_gen) * updates, (kept // per_gen) * updates
    if steps <= 0 or full_pass == 0 or steps <= kept_pass:
        return steps
    if steps <= full_pass:
        return max(1, kept_pass)
    return max(1, steps * kept_pass // full_pass)


def token_passes(args) -> int:
    """Forward-pass equivalents per prompt + completion token of a GRPO run with these ``GRPOConfig`` arguments:
    generated (a forward each), then a forward + backward (3) in the update; TRL also runs the policy's forward for
    π_old over the whole generation batch unless every update ends exactly where a generation batch ends
    (``gradient_accumulation_steps`` a multiple of ``steps_per_generation × num_iterations``: not so at the paper's
    2 updates per batch) or when it corrects vLLM's sampling (trl/trainer/grpo_trainer.py,
    ``_generate_and_score_completions``); a KL term adds the reference's forward."""
    generate_every = args.steps_per_generation * args.num_iterations
    old_policy = (args.gradient_accumulation_steps % generate_every != 0
                  or (args.use_vllm and args.vllm_importance_sampling_correction))
    return 1 + 3 + (1 if old_policy else 0) + (1 if args.beta else 0)


class GradingTally(TrainerCallback):
    """The reward's grading counters of the whole run, not of this process: every checkpoint stores them
    (``grading_stats.json``, written before the checkpoint is stamped complete) and a resumed run starts from its
    checkpoint's, so ``metrics.json`` counts what an uninterrupted run counts (steps after the checkpoint are
    graded again, as they are trained again). The RL-dynamics evaluations' counts live in their rows, which a
    resume keeps (:attr:`DynamicsCallback.grading_stats`)."""

    FILE = "grading_stats.json"

    def __init__(self, pool_stats, dynamics: DynamicsCallback | None, resume: Path | None):
        self.pool_stats = pool_stats
        self.dynamics = dynamics
        saved = json.loads((resume / self.FILE).read_text()) if resume and (resume / self.FILE).is_file() else {}
        self.base = saved.get("grading", {})

    def totals(self) -> dict[str, dict[str, int]]:
        """``{"grading": the reward's gradings, "dynamics_grading": the RL-dynamics evaluations'}``, whole run.

        Collective under several processes (every process calls it: ``on_save``, the end of ``train_grpo``): each
        process grades its own share of every generation batch in its own pool, so the session's counts are summed
        over the processes (the dynamics' rows already hold every process's)."""
        session = dict(self.dynamics.session_grading) if self.dynamics is not None else {}
        reward = {k: v - session.get(k, 0) for k, v in self.pool_stats().items()}
        dist = _distributed()
        if dist is not None:
            shares: list = [None] * dist.get_world_size()
            dist.all_gather_object(shares, reward)
            reward = {}
            for share in shares:
                for k, v in share.items():
                    reward[k] = reward.get(k, 0) + v
        return {"grading": {k: self.base.get(k, 0) + reward.get(k, 0) for k in dict.fromkeys([*self.base, *reward])},
                "dynamics_grading": self.dynamics.grading_stats if self.dynamics is not None else {}}

    def on_save(self, args, state, control, **kwargs):
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        totals = self.totals()  # collective: every process, before the main one writes
        if state.is_world_process_zero and ckpt.is_dir():
            write_json_atomic(ckpt / self.FILE, totals)
        return control

def train_grpo(*, init_path: str, load_model, tokenizer, rl_rows, cfg: Mapping[str, Any], seed: int,
               out_dir: str | Path, work_dir: str | Path, job_config: Mapping[str, Any],
               dynamics_benchmark: str | Path | None = None, extra_callbacks=(), rl_method: str = "grpo",
               method_params: Mapping[str, Any] | None = None, solution_key: str | None = None) -> dict[str, Any]:
    """Run GRPO from ``init_path``; save the final policy to ``out_dir``; return a metrics dict.

    ``dynamics_benchmark``: a math benchmark's file or folder (:func:`dynamics_records`); with
    ``grpo.eval_every`` > 0 the metrics gain ``"dynamics"``: rows ``{step, progress (step / max_steps),
    pass@1, pass@1_ci95, n_problems, n_samples, ...}`` (see :class:`DynamicsCallback`), persisted in
    ``work_dir/dynamics.jsonl`` across resumes, measured on the problems of ``"dynamics_subset"``
    (:func:`dynamics_problems`: ``subset``, ``seed``, ``problems``, ``of`` the benchmark's, their ``ids``).
    ``"grading"`` counts the reward's gradings only (the dynamics' own are in
    ``"dynamics_grading"``). ``extra_callbacks``: more ``TrainerCallback`` objects (tests).

    ``rl_method``: plain ``grpo`` or a method of :mod:`giftlab.rl_methods` (LUFFY, ReLIFT), trained by TRL's
    GRPOTrainer with the method's mixin, the GRPOConfig fields its algorithm fixes, and ``method_params`` over its
    released defaults; methods that learn from demonstrations read them from ``solution_key`` of the RL rows, and
    train only on the rows whose demonstration + EOS fits in ``grpo.max_completion_length``
    (:func:`demonstrations_that_fit`; the metrics' ``"demonstrations"`` counts those kept and dropped).
    """
    from datasets import Dataset
    from trl import GRPOConfig

    from giftlab.rewards import GradingPool
    from giftlab.training.rollouts import use_fast_rollouts

    from giftlab.rl_methods import get_method

    method = None if rl_method == "grpo" else get_method(rl_method)
    params = method.check(method_params) if method else {}
    set_seed(seed)
    work_dir = prepare_work_dir(work_dir, with_optimizer_groups(job_config))
    needs_demonstrations = bool(method and method.needs_demonstrations)
    rows = rl_dataset_rows(tokenizer, rl_rows, needs_demonstrations, solution_key)
    demonstrations = None
    if needs_demonstrations:  # whole demonstrations only (demonstrations_that_fit); plain GRPO's rows stay as they are
        limit = int(cfg["max_completion_length"])
        rows, dropped = demonstrations_that_fit(tokenizer, rows, limit)
        demonstrations = {"max_tokens": limit, "kept": len(rows), "dropped": dropped}
        if not rows:
            raise ValueError(f"no RL row left for {rl_method}: all {dropped} demonstrations ('{solution_key}') are "
                             f"longer than grpo.max_completion_length = {limit} tokens with EOS")
        if len(rows) < cfg["prompts_per_generation"]:  # the Trainer drops a partial generation batch
            raise ValueError(f"{rl_method}: {len(rows)} RL rows left with a demonstration that fits "
                             f"grpo.max_completion_length = {limit} tokens ({dropped} dropped), fewer than one "
                             f"generation batch (grpo.prompts_per_generation = {cfg['prompts_per_generation']})")
        if dropped:
            log.warning("%s: dropped %d of %d RL rows whose demonstration + EOS is longer than "
                        "grpo.max_completion_length = %d tokens", rl_method, dropped, dropped + len(rows), limit)
        steps = max_steps_for_kept_rows(cfg, len(rows), len(rows) + dropped)
        if steps != cfg["max_steps"]:
            log.warning("%s: %d optimiser steps instead of grpo.max_steps = %d, so that no prompt repeats more "
                        "often than in plain GRPO", rl_method, steps, cfg["max_steps"])
            cfg = {**cfg, "max_steps": steps}
        demonstrations["max_steps"] = steps
    dataset = Dataset.from_list(rows)
    # accelerate launch sets WORLD_SIZE; the per-device batch divides the paper's global batch over it
    kwargs = grpo_arguments(cfg, work_dir, seed, world_size=int(os.environ.get("WORLD_SIZE", 1)))
    if method:
        kwargs.update(method.grpo_overrides(params))
    # the chat template's end of turn ends a rollout too (giftlab.data.turn_end_ids): vLLM's engine stops on its own
    # EOS and the checkpoint's generation_config.json only, TRL's transformers path on the model's eos ids (below)
    turn_end = turn_end_ids(tokenizer)
    if turn_end and kwargs.get("use_vllm"):
        kwargs["generation_kwargs"] = {**(kwargs.get("generation_kwargs") or {}), "stop_token_ids": turn_end}
    args = GRPOConfig(**kwargs)
    trainer_class = grpo_trainer_class(method, params)
    args.run_name = "/".join(str(job_config[k]) for k in ("backbone", "run") if job_config.get(k)) or args.run_name
    step_log = work_dir / "steps.jsonl"
    resume = last_complete_checkpoint(work_dir)
    resume_step = int(resume.name.split("-")[-1]) if resume else None
    if resume is None:
        step_log.unlink(missing_ok=True)
    else:  # steps after the checkpoint are trained (and logged) again
        log.info("resuming from %s", resume)
        _write_rows(step_log, read_step_log(step_log, up_to_step=resume_step))
    dyn = dynamics_settings(cfg)
    records, subset = None, None
    if dyn is not None and dynamics_benchmark is None:
        log.warning("grpo.eval_every = %d but no dynamics benchmark was given: RL dynamics are off",
                    dyn["eval_every"])
        dyn = None
    if dyn is not None:
        whole = dynamics_records(dynamics_benchmark)
        records = dynamics_problems(whole, dyn["eval_problems"], dyn["eval_subset"])
        subset = {"subset": dyn["eval_subset"],
                  "seed": DYNAMICS_SUBSET_SEED if dyn["eval_subset"] == "random" else None,
                  "problems": len(records), "of": len(whole), "ids": [r["id"] for r in records]}
    with phase("grpo/load"):
        model = fp32_master_weights(load_model(init_path))
    saved_eos = model.generation_config.eos_token_id if turn_end else None
    if turn_end:  # TRL reads its stop ids from here (GRPOTrainer.eos_token_ids); restored before the export
        eos = [] if saved_eos is None else list(saved_eos) if isinstance(saved_eos, (list, tuple)) else [saved_eos]
        eos = eos or [tokenizer.eos_token_id]
        model.generation_config.eos_token_id = eos + [t for t in turn_end if t not in eos]
    t0 = time.time()
    dynamics = None
    # grpo.percent_rule (schema-validated): OMI's 0.5 == 50 rule, on as in GIFT's reward
    percent_rule = bool(cfg.get("percent_rule", True))
    with GradingPool(workers=1, timeout=float(cfg.get("grading_timeout", 10)),
                     percent_rule=percent_rule) as pool:
        if dyn is not None:
            dynamics = DynamicsCallback(work_dir / "dynamics.jsonl", records, tokenizer, pool.grade_many,
                                        dyn, seed, resume_step=resume_step)
        tally = GradingTally(lambda: dict(pool.stats), dynamics, resume)
        # the tally before the stamp: a checkpoint stamped complete holds its counts
        callbacks = [RunIntervals(), tally, CompleteMarker(keep=1), JsonlLog(step_log),
                     *([dynamics] if dynamics is not None else [])]
        # last: its on_save runs after CompleteMarker's, then raises Preempted (SIGTERM / SIGUSR1: exit non-zero)
        preemption = PreemptionCheckpoint()
        if not args.use_vllm:  # TRL samples through model.generate: its random stream without its idle work
            use_fast_rollouts(model)
        with trl_reference_in_every_process(args.beta > 0):
            trainer = trainer_class(model=model, reward_funcs=[MathReward(pool)], args=args,
                                  train_dataset=dataset, processing_class=tokenizer,
                                  callbacks=callbacks + list(extra_callbacks) + [preemption])
        preemption.trainer = trainer
        use_tensorboard(trainer, work_dir / "tensorboard", resume_step)
        with phase("grpo/train") as timing, trl_phases("grpo/train"):
            try:
                train_or_finish(trainer, resume)
            finally:  # also when train() raises: no stale handler outlives this run
                preemption.uninstall()
            passes = token_passes(args)
            timing["tokens"] = int(trainer.state.num_input_tokens_seen)
            timing["flops"] = passes * matmul_flops(model, timing["tokens"])
        totals = tally.totals()
    grading = totals["grading"]
    seconds = time.time() - t0
    if turn_end:
        model.generation_config.eos_token_id = saved_eos  # the export keeps the checkpoint's own
    with phase("grpo/export"):
        export_model(trainer, tokenizer, out_dir, cfg.get("export_dtype"))
    steps = read_step_log(step_log)
    metrics = {"init": init_path, "steps": trainer.state.global_step, "log": steps, "grading": grading,
               "math_grading": {"percent_rule": percent_rule}, "rl_method": rl_method, "method_params": params,
               "resumed_from": str(resume) if resume else None,
               "train_seconds_this_session": round(seconds, 2),
               "dynamics": list(dynamics.rows) if dynamics is not None else []}
    if demonstrations is not None:  # LUFFY, ReLIFT: the rows left out for a demonstration too long to train on
        metrics["demonstrations"] = demonstrations
    if dynamics is not None:
        metrics["dynamics_benchmark"] = str(dynamics_benchmark)
        metrics["dynamics_settings"] = dyn
        metrics["dynamics_subset"] = subset
        metrics["dynamics_grading"] = totals["dynamics_grading"]
    return metrics
