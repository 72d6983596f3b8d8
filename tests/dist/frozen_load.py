"""Run under ``torchrun --nproc_per_node 2`` (CPU, gloo) with a checkpoint dir and an output dir: what a frozen model
loaded inside an ``accelerate launch`` FSDP job holds on each process. accelerate's FSDP config sets
ACCELERATE_USE_FSDP and FSDP_CPU_RAM_EFFICIENT_LOADING; the Trainer's arguments initialise the process group before
the job loads anything after them. Writes ``<out>/rank<k>.json``: the logits' sums of the same input from a model
loaded plainly and one loaded inside :func:`giftlab.models.weights_in_every_process`, and the env var after it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from giftlab.models import load_model, weights_in_every_process

os.environ["ACCELERATE_USE_FSDP"] = "true"
os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "true"
dist.init_process_group("gloo")
ids = torch.arange(3, 40).unsqueeze(0)


def logits_sum(model) -> float:
    with torch.no_grad():
        return float(model(input_ids=ids).logits.double().abs().sum())


plain = logits_sum(load_model(sys.argv[1]))
with weights_in_every_process():
    whole = logits_sum(load_model(sys.argv[1]))
import transformers  # noqa: E402

Path(sys.argv[2], f"rank{dist.get_rank()}.json").write_text(json.dumps({
    "plain": plain, "whole": whole, "env_after": os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING"),
    "transformers": transformers.__version__}))
dist.destroy_process_group()
