"""Gradients reduced and summed in fp32 under FSDP, as verl (the paper's trainer, Appendix E) does.

verl shards with ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32, cast_forward_inputs=True)`` (its FSDP
default ``mixed_precision.reduce_dtype: fp32``) and calls ``backward`` on every micro-batch with gradient
synchronisation on: each micro-batch's gradient is reduce-scattered in fp32 and summed into the fp32 shard.

What ``accelerate launch`` with ``mixed_precision: bf16`` and the Trainer do by themselves differs twice:

* accelerate 1.15 gives FSDP2 ``MixedPrecisionPolicy(bf16, reduce_dtype=bf16, output_dtype=bf16)``
  (``FullyShardedDataParallelPlugin.set_mixed_precision``); neither its config file nor its environment variables set
  another reduce dtype. :class:`ReduceInFp32` sets verl's on the plugin after the Trainer made its Accelerator and
  before the model is sharded; with no ``output_dtype`` the chunked loss head's summed fp32 loss also leaves the
  model's forward unrounded.
* transformers 5.17's ``Trainer._inner_training_loop`` runs every micro-batch of a step but the last under
  ``accelerator.no_sync``, which under FSDP2 keeps each parameter's whole gradient on every GPU and sums the
  micro-batches there, in bf16. :data:`SYNC_EACH_MICRO_BATCH` (``TrainingArguments.accelerator_config``) makes the
  loop synchronise every micro-batch, as verl does; the unsharded accumulators (2 bytes per parameter on every GPU)
  go too. The cost is one reduce-scatter per micro-batch instead of one per step.

Measured on CPU (2 gloo processes, ``benchmarks/gradient_precision.py``): the error of the step's gradient against the
exact sum of the same micro-batch gradients, for accelerate's default and for this.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any

import torch

from giftlab.training.sharded import accelerate_fsdp

log = logging.getLogger(__name__)

# TrainingArguments(accelerator_config=...): the Trainer reads sync_each_batch to skip no_sync
SYNC_EACH_MICRO_BATCH = {"gradient_accumulation_kwargs": {"sync_each_batch": True}}


def accelerator_config() -> dict[str, Any] | None:
    """``TrainingArguments.accelerator_config`` for this process: synchronise every micro-batch under an FSDP launch;
    elsewhere (one process, DDP, whose accumulation is already in the fp32 master weights' dtype) the default."""
    # a fresh copy: the Trainer writes num_steps into the dict it is given, and a second Trainer given the same
    # dict with gradient accumulation would refuse it
    return copy.deepcopy(SYNC_EACH_MICRO_BATCH) if accelerate_fsdp() else None


def fp32_reduction(policy):
    """``policy`` (FSDP2 ``MixedPrecisionPolicy`` or FSDP1 ``MixedPrecision``) with verl's reduction: gradients
    reduced in fp32 and, for FSDP2, the forward's outputs left in the dtype they were computed in."""
    if policy is None or policy.param_dtype is None:
        return policy  # full precision already: nothing is reduced in a lower dtype
    changes = {"reduce_dtype": torch.float32}
    if any(f.name == "output_dtype" for f in dataclasses.fields(policy)):
        changes["output_dtype"] = None
    return dataclasses.replace(policy, **changes)


class ReduceInFp32:
    """In front of an HF ``Trainer`` subclass (the SFT and GRPO trainers): verl's FSDP reduction in fp32."""

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None)
        if plugin is None:
            return
        before = plugin.mixed_precision_policy
        plugin.mixed_precision_policy = fp32_reduction(before)
        if plugin.mixed_precision_policy != before:
            log.info("FSDP mixed precision: %s (accelerate's was %s)", plugin.mixed_precision_policy, before)
