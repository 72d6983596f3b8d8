"""GRPO with TRL's ``GRPOTrainer`` from an SFT checkpoint (or the base model, for Direct RL).

The config speaks in the paper's units (prompts per generation batch, prompts per optimiser
update, G samples per prompt); :func:`grpo_arguments` translates them into TRL's batch fields.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from transformers import TrainerCallback, set_seed

from giftlab.cli import ConfigError
from giftlab.data import render_prompt
from giftlab.io import atomic_dir
from giftlab.training.checkpoints import CompleteMarker, last_complete_checkpoint, prepare_work_dir

log = logging.getLogger(__name__)


def grpo_arguments(cfg: Mapping[str, Any], work_dir: str | Path, seed: int, world_size: int = 1,
                   grad_accum: int = 1) -> dict[str, Any]:
    """Map the ``grpo`` config section to ``trl.GRPOConfig`` keyword arguments.

    One generation batch = ``prompts_per_generation`` prompts × G completions; each optimiser
    update consumes ``prompts_per_update`` prompts × G (paper: 128 and 64, so 2 updates per batch).
    """
    G = cfg["num_generations"]
    per_gen, per_update = cfg["prompts_per_generation"], cfg["prompts_per_update"]
    if per_gen % per_update:
        raise ConfigError(f"config error: grpo.prompts_per_generation ({per_gen}) must be a multiple of "
                          f"grpo.prompts_per_update ({per_update})")
    completions_per_update = per_update * G
    if completions_per_update % (world_size * grad_accum):
        raise ConfigError(f"config error: grpo.prompts_per_update × num_generations ({completions_per_update}) "
                          f"must divide evenly over {world_size} processes × {grad_accum} accumulation steps")
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
        scale_rewards=cfg.get("scale_rewards", "none"),
        loss_type=cfg.get("loss_type", "grpo"),
        use_vllm=bool(cfg.get("use_vllm", False)),
        bf16=bool(cfg.get("bf16", False)) and not use_cpu,
        use_cpu=use_cpu,
        save_strategy="steps",
        save_steps=max(1, cfg.get("save_steps", 25)),
        save_total_limit=1,
        logging_steps=1,
        report_to=["tensorboard"],
        disable_tqdm=False,
    )
    if max_steps > 0:
        kwargs["max_steps"] = max_steps
    else:
        kwargs["num_train_epochs"] = 1
    return kwargs


class MathReward:
    """Binary reward from the grading cascade; timeouts and errors score 0 and are counted."""

    __name__ = "math_reward"

    def __init__(self, pool):
        self.pool = pool

    def __call__(self, prompts, completions, final_answer, log_metric=None, **_):
        results = self.pool.grade_many(list(completions), list(final_answer))
        if log_metric is not None:
            log_metric("grading/timeouts", float(sum(r.timed_out for r in results)))
            log_metric("grading/errors", float(sum(r.error is not None for r in results)))
        return [1.0 if r.correct else 0.0 for r in results]


class JsonlLog(TrainerCallback):
    """Append every logged step (reward, KL, entropy, lengths, grading timeouts) to a JSONL file."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"step": state.global_step, **logs}) + "\n")
        return control


def train_grpo(*, init_path: str, load_model, tokenizer, rl_rows, cfg: Mapping[str, Any], seed: int,
               out_dir: str | Path, work_dir: str | Path, job_config: Mapping[str, Any]) -> dict[str, Any]:
    """Run GRPO from ``init_path``; save the final policy to ``out_dir``; return a metrics dict."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from giftlab.rewards import GradingPool

    set_seed(seed)
    work_dir = prepare_work_dir(work_dir, job_config)
    dataset = Dataset.from_list([{"prompt": render_prompt(tokenizer, r["question"]),
                                  "final_answer": r["final_answer"]} for r in rl_rows])
    args = GRPOConfig(**grpo_arguments(cfg, work_dir, seed))
    step_log = work_dir / "steps.jsonl"
    resume = last_complete_checkpoint(work_dir)
    if resume is None:
        step_log.unlink(missing_ok=True)
    model = load_model(init_path)
    t0 = time.time()
    with GradingPool(workers=1, timeout=float(cfg.get("grading_timeout", 10))) as pool:
        trainer = GRPOTrainer(model=model, reward_funcs=[MathReward(pool)], args=args,
                              train_dataset=dataset, processing_class=tokenizer,
                              callbacks=[CompleteMarker(), JsonlLog(step_log)])
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        grading = dict(pool.stats)
    seconds = time.time() - t0
    with atomic_dir(out_dir) as tmp:
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    steps = [json.loads(line) for line in step_log.read_text().splitlines() if line.strip()]
    return {"init": init_path, "steps": trainer.state.global_step, "log": steps, "grading": grading,
            "resumed_from": str(resume) if resume else None,
            "train_seconds_this_session": round(seconds, 2)}
