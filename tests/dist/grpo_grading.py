"""Run under ``torchrun --nproc_per_node {1,2}`` with ``ACCELERATE_USE_CPU=1``: a short plain GRPO run through
``train_grpo`` at the same global batch whatever the number of processes. Every process writes
``<out>/rank<r>.json``: the ``grading`` counts of its metrics (the reward's gradings of the whole run, every
process's completions) and those its last checkpoint stores.

    ACCELERATE_USE_CPU=1 torchrun --standalone --nproc_per_node 2 tests/dist/grpo_grading.py BASE_DIR OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROWS = [{"question": f"Start with {i}. Add {i % 7 + 1}. What is the result?", "final_answer": str(i + i % 7 + 1)}
        for i in range(1, 9)]
# 2 generation batches of 4 prompts x G = 2: 16 reward gradings in all, 8 per process on 2 processes
GRPO = dict(max_steps=2, lr=1e-3, lr_scheduler="constant", num_generations=2, prompts_per_generation=4,
            prompts_per_update=4, temperature=1.0, max_completion_length=6, save_steps=1, grading_timeout=10)


def main(base_dir: str, out_dir: str) -> None:
    from giftlab.models import load_model
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.grpo import train_grpo

    out = Path(out_dir)
    metrics = train_grpo(init_path=base_dir, load_model=load_model, tokenizer=build_tokenizer(), rl_rows=ROWS,
                         cfg=GRPO, seed=0, out_dir=out / "model", work_dir=out / "work", job_config={"grpo": GRPO})
    saved = json.loads((out / "work" / "checkpoint-2" / "grading_stats.json").read_text())
    rank = int(os.environ.get("RANK", 0))
    (out / f"rank{rank}.json").write_text(json.dumps({"grading": metrics["grading"], "saved": saved["grading"]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
