"""Under an FSDP launch the SFT and GRPO trainers reduce gradients in fp32 and synchronise every micro-batch, as verl
does (giftlab.training.gradient_precision); accelerate's own bf16 policy with the Trainer's no_sync rounds the step's
gradient to bf16 (measured: benchmarks/gradient_precision.py on 2 gloo processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import FullyShardedDataParallelPlugin

from giftlab.training import gradient_precision
from giftlab.training.gradient_precision import SYNC_EACH_MICRO_BATCH, ReduceInFp32, accelerator_config, fp32_reduction
from helpers import REPO, venv_env


def _accelerate_policy(fsdp_version: int):
    """The policy `accelerate launch` with mixed_precision: bf16 gives FSDP."""
    plugin = FullyShardedDataParallelPlugin(fsdp_version=fsdp_version)
    plugin.set_mixed_precision("bf16")
    return plugin


def test_fsdp2_policy_reduces_in_fp32_and_leaves_outputs_as_computed():
    before = _accelerate_policy(2).mixed_precision_policy
    assert (before.reduce_dtype, before.output_dtype) == (torch.bfloat16, torch.bfloat16)
    after = fp32_reduction(before)
    assert (after.param_dtype, after.reduce_dtype, after.output_dtype) == (torch.bfloat16, torch.float32, None)
    assert after.cast_forward_inputs == before.cast_forward_inputs


def test_fsdp1_policy_reduces_in_fp32_and_keeps_its_buffers():
    before = _accelerate_policy(1).mixed_precision_policy
    after = fp32_reduction(before)
    assert (after.param_dtype, after.reduce_dtype, after.buffer_dtype) == (torch.bfloat16, torch.float32,
                                                                           torch.bfloat16)


def test_full_precision_or_no_policy_is_left_alone():
    from torch.distributed.fsdp import MixedPrecisionPolicy

    full = MixedPrecisionPolicy()
    assert fp32_reduction(full) is full
    assert fp32_reduction(None) is None


class _FakeTrainer:
    """What Trainer.create_accelerator_and_postprocess leaves under an FSDP2 launch with mixed_precision: bf16."""

    plugin = None

    def create_accelerator_and_postprocess(self):
        self.accelerator = SimpleNamespace(state=SimpleNamespace(**({"fsdp_plugin": self.plugin} if self.plugin
                                                                     else {})))


def test_the_trainer_mixin_sets_verls_policy_before_the_model_is_sharded():
    plugin = _accelerate_policy(2)
    trainer = type("T", (ReduceInFp32, _FakeTrainer), {"plugin": plugin})()
    trainer.create_accelerator_and_postprocess()
    assert plugin.mixed_precision_policy.reduce_dtype == torch.float32
    plain = type("T", (ReduceInFp32, _FakeTrainer), {})()  # no FSDP: nothing to change
    plain.create_accelerator_and_postprocess()


def test_sft_and_grpo_trainers_carry_the_mixin_before_the_trainer():
    from transformers import Trainer

    from giftlab.training.grpo import grpo_trainer_class
    from giftlab.training.sft import ObjectiveTrainer

    for cls in (ObjectiveTrainer, grpo_trainer_class()):
        mro = cls.__mro__
        assert mro.index(ReduceInFp32) < mro.index(Trainer), cls


def test_training_arguments_synchronise_every_micro_batch_only_under_fsdp(monkeypatch, tmp_path):
    from giftlab.training.grpo import grpo_arguments
    from giftlab.training.sft import SFTSettings, training_arguments

    cfg = dict(max_steps=1, lr=1e-3, num_generations=2, prompts_per_generation=2, prompts_per_update=2,
               max_completion_length=8)
    sft = SFTSettings(epochs=1, batch_size=2, lr=1e-3, max_length=32, seed=0)

    def sync_each_batch():
        kwargs = training_arguments(sft, tmp_path, steps_per_epoch=1).accelerator_config.gradient_accumulation_kwargs
        return (kwargs or {}).get("sync_each_batch", False), grpo_arguments(cfg, tmp_path, seed=0)["accelerator_config"]

    assert sync_each_batch() == (False, None)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert sync_each_batch() == (True, SYNC_EACH_MICRO_BATCH)


@pytest.mark.parametrize("fsdp", [False, True])
def test_the_trainers_loop_skips_no_sync_when_told(monkeypatch, tmp_path, fsdp):
    """transformers' own loop (not a copy of it): 4 micro-batches per step run 3 of them under no_sync, or none;
    twice in one process (the Trainer writes into the settings it is given)."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from giftlab.models import build_tiny_model

    monkeypatch.setattr(gradient_precision, "accelerate_fsdp", lambda: fsdp)
    model = build_tiny_model("qwen2", vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, seed=0)
    data = Dataset.from_list([{"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]}] * 4)
    for _ in range(2):
        args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=1,
                                 gradient_accumulation_steps=4, max_steps=1, report_to=[], use_cpu=True,
                                 save_strategy="no", accelerator_config=accelerator_config())
        trainer = type("T", (ReduceInFp32, Trainer), {})(model=model, args=args, train_dataset=data)
        calls = []
        real = trainer.accelerator.no_sync
        monkeypatch.setattr(trainer.accelerator, "no_sync", lambda model: calls.append(1) or real(model))
        trainer.train()
        assert len(calls) == (0 if fsdp else 3)


@pytest.mark.slow
def test_fp32_reduction_sums_the_micro_batches_to_fp32_accuracy(tmp_path):
    """2 gloo processes x 4 micro-batches under FSDP2: accelerate's bf16 policy with no_sync is off the exact sum of
    the same bf16 micro-batch gradients by ~1e-3 (bf16's rounding); verl's fp32 reduction every micro-batch by fp32's."""
    out = tmp_path / "precision.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gradient_precision.py"), "--micro-batches", "4",
                           "--hidden", "32", "--width", "32", "--json", str(out)],
                          env=venv_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    errors = {(r["reduce_fp32"], r["sync_each_micro_batch"]): r["relative_error"]
              for r in json.loads(out.read_text())["results"]}
    assert errors[(False, False)] > 1e-4  # the measurement sees bf16's rounding
    assert errors[(True, True)] < 1e-6
    assert errors[(True, False)] < 1e-6  # fp32 under no_sync too, but in unsharded fp32 accumulators on every GPU
