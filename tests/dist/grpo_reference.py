"""Run under ``torchrun --nproc_per_node 2`` (CPU, gloo) with a checkpoint dir and an output dir: what the KL
reference TRL's GRPOTrainer loads itself (``grpo.kl_coef`` > 0) holds on each process of an ``accelerate launch``
FSDP job with CPU-RAM-efficient loading (workflow/accelerate/fsdp.yaml sets both variables below).

accelerate's FSDP plugin needs a GPU, so the Trainer's Accelerator is made here as on CPU (the FSDP variable away
while it is made: DDP over gloo); the reference's load sees the variables as the launch sets them. Writes
``<out>/rank<k>.json``: the reference's logits' sums of one input for a trainer built plainly and one built inside
:func:`giftlab.training.sharded.trl_reference_in_every_process`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["ACCELERATE_USE_FSDP"] = "true"
os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "true"

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import transformers  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from giftlab.models import load_model, load_tokenizer, weights_in_every_process  # noqa: E402
from giftlab.training.grpo import grpo_trainer_class  # noqa: E402
from giftlab.training.sharded import trl_reference_in_every_process  # noqa: E402

make_accelerator = transformers.Trainer.create_accelerator_and_postprocess


def accelerator_on_cpu(self):
    saved = os.environ.pop("ACCELERATE_USE_FSDP")
    try:
        return make_accelerator(self)
    finally:
        os.environ["ACCELERATE_USE_FSDP"] = saved


transformers.Trainer.create_accelerator_and_postprocess = accelerator_on_cpu
base, out = sys.argv[1], Path(sys.argv[2])
args = GRPOConfig(output_dir=str(out / "trainer"), beta=0.1, per_device_train_batch_size=2, num_generations=2,
                  max_completion_length=4, report_to=[], use_cpu=True)  # makes the process group
tokenizer = load_tokenizer(base)
with weights_in_every_process():  # the policy is not under test (accelerate broadcasts it on GPUs)
    policy = load_model(base)
ids = torch.arange(3, 40).unsqueeze(0)


def reference_logits_sum() -> float:
    trainer = grpo_trainer_class()(model=policy, reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
                                   args=args, train_dataset=Dataset.from_list([{"prompt": "1+1="}] * 4),
                                   processing_class=tokenizer)
    with torch.no_grad():
        return float(trainer.ref_model(input_ids=ids).logits.double().abs().sum())


plain = reference_logits_sum()
with trl_reference_in_every_process(True):
    whole = reference_logits_sum()
Path(out, f"rank{dist.get_rank()}.json").write_text(json.dumps({
    "plain": plain, "whole": whole, "env_after": os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING"),
    "transformers": transformers.__version__}))
dist.destroy_process_group()
