"""The FLOPs GRPO reports count every forward TRL 1.16 runs."""

from __future__ import annotations

from types import SimpleNamespace

import yaml

from giftlab.training.grpo import grpo_arguments, token_passes
from helpers import REPO


def _args(**kw):
    return SimpleNamespace(**{"use_vllm": False, "vllm_importance_sampling_correction": False, "beta": 0.0,
                              "num_iterations": 1, **kw})


def test_two_updates_per_generation_batch_add_the_old_policy_forward(tmp_path):
    """The paper profile (8 processes): 32 accumulation steps per update, 64 micro-steps per generation batch, so
    TRL computes π_old's log-probs over the batch (grad_accum % steps_per_generation != 0): 1 + 1 + 3 passes, not
    the 4 the metrics used to count."""
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    kwargs = grpo_arguments(paper["grpo"], tmp_path, seed=0, world_size=8)
    args = _args(gradient_accumulation_steps=kwargs["gradient_accumulation_steps"],
                 steps_per_generation=kwargs["steps_per_generation"], use_vllm=kwargs["use_vllm"],
                 vllm_importance_sampling_correction=kwargs["vllm_importance_sampling_correction"],
                 beta=kwargs["beta"])
    assert (args.gradient_accumulation_steps, args.steps_per_generation) == (32, 64)
    assert token_passes(args) == 5


def test_one_update_per_generation_batch_reuses_the_policy_forward():
    assert token_passes(_args(gradient_accumulation_steps=4, steps_per_generation=4)) == 4
    assert token_passes(_args(gradient_accumulation_steps=4, steps_per_generation=4, beta=0.01)) == 5
    assert token_passes(_args(gradient_accumulation_steps=4, steps_per_generation=4, use_vllm=True,
                              vllm_importance_sampling_correction=True)) == 5
