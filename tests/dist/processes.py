"""Run under ``torchrun --nproc_per_node {1,2}`` with ``ACCELERATE_USE_CPU=1`` (DDP over gloo; accelerate's own
``launch`` starts several CPU processes only through mpirun, and calls torchrun's launcher for GPUs): SFT with SFT, GIFT and PSFT and a
short GRPO, LUFFY and ReLIFT, through the pipeline's own trainers, at the same *global* batch whatever the number of processes.
Writes ``<out>/result.json`` (main process): per objective the loss of every optimiser step and the validation CE
of every epoch; GRPO's optimiser steps and its export. Every process writes ``<out>/grpo-grading-rank<r>.json``: the
GRPO run's grading counts as its metrics and its last checkpoint record them.

    ACCELERATE_USE_CPU=1 torchrun --standalone --nproc_per_node 2 tests/dist/processes.py BASE_DIR OUT_DIR
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

GLOBAL_BATCH = 8       # examples per optimiser step, whatever the number of processes
PER_DEVICE = 2
ROWS = [{"question": f"Start with {i}. Add {i % 7 + 1}. What is the result?", "final_answer": str(i + i % 7 + 1),
         "r1_solution_1": f"{i}+{i % 7 + 1}={i + i % 7 + 1}\n" * (1 + i % 3) + f"\\boxed{{{i + i % 7 + 1}}}"}
        for i in range(1, 25)]
OBJECTIVES = {"sft": {}, "gift": {"beta": 3.0}, "psft": {"snapshot_every": 2}}
UNIFIED = {"luffy": {}, "relift": {"sft_batch": 2, "sft_micro_batch": 1}}
GRPO = dict(max_steps=2, lr=1e-3, lr_scheduler="constant", num_generations=2, prompts_per_generation=4,
            prompts_per_update=4, temperature=1.0, max_completion_length=6, save_steps=1, grading_timeout=10)
# LUFFY and ReLIFT train on whole demonstrations (train_grpo drops rows whose demonstration + EOS is longer than
# max_completion_length): these are 16 to 32 tokens
UNIFIED_GRPO = dict(GRPO, max_completion_length=32)


def main(base_dir: str, out_dir: str) -> None:
    # imported here, not at module level: the grading pool's workers run this file again as __mp_main__
    from transformers import TrainerCallback

    from giftlab.models import load_model
    from giftlab.rewards import GradingPool
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.grpo import train_grpo
    from giftlab.training.sft import SFTSettings, train_sft

    EPOCH_FIELDS = {"epoch", "step", "val_loss", "train_loss", "seconds"}

    class StepLosses(TrainerCallback):
        def __init__(self):
            self.losses = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append([state.global_step, float(logs["loss"])])

    out = Path(out_dir)
    world = int(os.environ.get("WORLD_SIZE", 1))  # set by torchrun / accelerate launch
    tok = build_tokenizer()
    result = {"processes": world, "sft": {}}
    for method, params in OBJECTIVES.items():
        settings = SFTSettings(epochs=2, batch_size=PER_DEVICE, grad_accum=GLOBAL_BATCH // (PER_DEVICE * world),
                               lr=1e-3, max_length=96, seed=0, logging_steps=1)
        losses = StepLosses()
        metrics = train_sft(base_path=base_dir, tokenizer=tok, load_model=load_model, train_rows=ROWS[:16],
                            val_rows=ROWS[16:], solution_key="r1_solution_1", method=method,
                            objective_params=params, settings=settings, out_dir=out / method / "model",
                            work_dir=out / method / "work", job_config={"method": method}, callbacks=[losses])
        result["sft"][method] = {"step_losses": losses.losses, "val_loss": [e["val_loss"] for e in metrics["epochs"]],
                                 "steps": metrics["steps"], "global_batch": metrics["global_batch"],
                                 "metrics_processes": metrics["processes"],
                                 # the objective's diagnostics: token means over every process's tokens
                                 "diagnostics": [{k: v for k, v in e.items() if k not in EPOCH_FIELDS}
                                                 for e in metrics["epochs"]]}
    # every reward grading reports an error (its score kept): each step's grading/errors is then the generation
    # batch's completions, 4 prompts x G = 2, whatever the number of processes
    grade_many = GradingPool.grade_many
    GradingPool.grade_many = lambda pool, responses, golds: [
        dataclasses.replace(r, error="injected") for r in grade_many(pool, responses, golds)]
    try:
        grpo = train_grpo(init_path=base_dir, load_model=load_model, tokenizer=tok, rl_rows=ROWS[:8], cfg=GRPO,
                          seed=0, out_dir=out / "grpo" / "model", work_dir=out / "grpo" / "work",
                          job_config={"grpo": GRPO})
    finally:
        GradingPool.grade_many = grade_many
    result["grpo"] = {"steps": grpo["steps"], "logged_steps": sorted({row["step"] for row in grpo["log"]}),
                      "export": sorted(p.name for p in (out / "grpo" / "model").iterdir()),
                      "grading_errors": [row["grading/errors"] for row in grpo["log"] if "grading/errors" in row]}
    # the reward's gradings as every process's metrics and the last checkpoint record them (each process grades
    # its own share of a generation batch)
    saved = json.loads((out / "grpo" / "work" / "checkpoint-2" / "grading_stats.json").read_text())
    rank = int(os.environ.get("RANK", 0))
    (out / f"grpo-grading-rank{rank}.json").write_text(json.dumps({"metrics": grpo["grading"],
                                                                   "checkpoint": saved["grading"]}))
    # the unified paradigms: LUFFY's expert slot is decided on the global index (a group may span processes),
    # ReLIFT's buffer is the whole batch's on every process and each process trains a share of the SFT batch
    for method, params in UNIFIED.items():
        run = train_grpo(init_path=base_dir, load_model=load_model, tokenizer=tok, rl_rows=ROWS[:8], cfg=UNIFIED_GRPO,
                         seed=0,
                         out_dir=out / method / "model", work_dir=out / method / "work", job_config={"run": method},
                         rl_method=method, method_params=params, solution_key="r1_solution_1")
        result[method] = {"steps": run["steps"], "log": run["log"], "demonstrations": run["demonstrations"]}
    if int(os.environ.get("RANK", 0)) == 0:
        (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
