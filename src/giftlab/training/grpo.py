"""GRPO with TRL's ``GRPOTrainer`` from an SFT checkpoint (or the base model, for Direct RL).

The config speaks in the paper's units (prompts per generation batch, prompts per optimiser
update, G samples per prompt); :func:`grpo_arguments` translates them into TRL's batch fields.

The objective (TRL's loss as configured; paper §2 and Appendix E.2). For prompt x with G completions o_1..o_G and
binary rewards R_i (:class:`MathReward`), the advantage is A_i = R_i − mean_j R_j (``scale_rewards: none``: no
division by the group's std). Per completion token t, with ratio r_{i,t} = π_θ(o_{i,t} | x, o_{i,<t}) /
π_old(o_{i,t} | ...) and ε = ``clip_epsilon``,

    ℓ_{i,t} = −min(r_{i,t}·A_i, clip(r_{i,t}, 1 − ε, 1 + ε)·A_i) + kl_coef · KL_{i,t}(π_θ ‖ π_ref)

with ``kl_coef`` 0 in every profile (E.2 has no KL term) and, under ``dual_clip`` c > 1 + ε, r_{i,t} first capped at
c, which bounds a negative advantage's loss at −c·A_i (VeRL's dual clip),
aggregated by ``loss_type``: ``dapo`` (the paper profile) Σ_{i,t ∈ update} ℓ_{i,t} / (tokens of the rollout batch /
updates per batch), every token weighed alike; ``grpo`` (the tiny default) mean_i (Σ_t ℓ_{i,t} / |o_i|), each
completion by its own length. tests/training/test_dual_clip.py checks both the clip and ``dapo``'s weighting on
TRL's own loss against a reference written out from these formulas.

RL dynamics (paper Figure 3): with ``grpo.eval_every`` > 0 and a benchmark file, the metrics dict gains
``"dynamics"``, the live policy's pass@1 during training (:mod:`giftlab.training.dynamics`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from transformers import TrainerCallback, set_seed

from giftlab.cli import ConfigError
from giftlab.data import render_prompt, turn_end_ids
from giftlab.io import write_json_atomic
from giftlab.jobs import check_dual_clip, check_grpo_batch
from giftlab.profiling import matmul_flops, phase, trl_phases
from giftlab.training.checkpoints import (CompleteMarker, RunIntervals, _distributed, export_model,
                                          last_complete_checkpoint, prepare_work_dir, train_or_finish)
from giftlab.training.dynamics import DynamicsCallback, dynamics_plan, rewrite_rows
from giftlab.training.gradient_precision import ReduceInFp32, accelerator_config
from giftlab.training.preemption import PreemptionCheckpoint
from giftlab.training.rollout_state import resumable
from giftlab.training.sharded import (accelerate_fsdp, fp32_master_weights, rank_and_world,
                                      trl_reference_in_every_process)
from giftlab.training.tracking import StepLog, read_step_rows, resolve_report_to, use_tensorboard
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
        rows, cfg, demonstrations = _rows_whose_demonstration_fits(tokenizer, rows, cfg, rl_method, solution_key)
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
        rewrite_rows(step_log, read_step_rows(step_log, up_to_step=resume_step))
    dyn, records, subset = dynamics_plan(cfg, dynamics_benchmark)
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
        callbacks = [RunIntervals(), tally, CompleteMarker(keep=1), StepLog(step_log),
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
    steps = read_step_rows(step_log)
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


def _rows_whose_demonstration_fits(tokenizer, rows: list[dict], cfg: Mapping[str, Any], rl_method: str,
                                   solution_key: str | None) -> tuple[list[dict], Mapping[str, Any], dict]:
    """A demonstration method's RL rows whose demonstration + EOS fits ``grpo.max_completion_length``
    (:func:`demonstrations_that_fit`), the config with the steps that keep plain GRPO's repeats per prompt
    (:func:`max_steps_for_kept_rows`), and the metrics' ``"demonstrations"`` record; too few rows: one line."""
    limit = int(cfg["max_completion_length"])
    rows, dropped = demonstrations_that_fit(tokenizer, rows, limit)
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
    return rows, cfg, {"max_tokens": limit, "kept": len(rows), "dropped": dropped, "max_steps": steps}
