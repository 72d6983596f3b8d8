"""TRL's own GRPO loss as the paper profile configures it: ``grpo.dual_clip`` (VeRL's clip_ratio_c = 3) and
``loss_type: dapo`` (token-level aggregation, the last test).

VeRL's ``compute_policy_loss`` (verl/trainer/ppo/core_algos.py), written out as the reference: per token, with
ratio r = π/π_old and advantage A,

    clipped = max(-A·r, -A·clip(r, 1 - ε, 1 + ε))
    loss    = min(clipped, -A·c)  if A < 0  else  clipped

TRL applies ``delta`` as min(r, δ) inside the PPO min, for either sign of A; the two agree once δ > 1 + ε (the config
check), which this test shows on TRL's real loss: tokens with r above 3 under a negative advantage, and above and
below the clip range under both signs, in value and in gradient.
"""

from __future__ import annotations

import pytest
import torch

from giftlab.cli import ConfigError
from giftlab.jobs import check_dual_clip
from giftlab.models import load_model
from giftlab.tinyworld.tokenizer import build_tokenizer
from giftlab.training.grpo import grpo_arguments, rl_dataset_rows

EPS, DUAL_CLIP, G = 0.2, 3.0, 4
ROWS = [{"question": f"Start with {i}. Add 1. What is the result?", "final_answer": str(i + 1)} for i in range(1, 5)]
CFG = dict(max_steps=1, lr=1e-3, lr_scheduler="constant", num_generations=G, prompts_per_generation=2,
           prompts_per_update=2, temperature=1.0, max_completion_length=12, grading_timeout=10,
           clip_epsilon=EPS, loss_type="bnpo")


def _zero_reward(prompts, completions, **_):
    return [0.0] * len(completions)


def _trainer(base_dir, tmp_path, **cfg):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    tok = build_tokenizer()
    kwargs = grpo_arguments({**CFG, **cfg}, tmp_path / "work", seed=0)
    kwargs.update(report_to=[], save_strategy="no")
    data = Dataset.from_list(rl_dataset_rows(tok, ROWS))
    return GRPOTrainer(model=load_model(str(base_dir)), reward_funcs=[_zero_reward], args=GRPOConfig(**kwargs),
                       train_dataset=data, processing_class=tok)


def _completion_logps(model, inputs):
    """log π(token) of each completion token, from a forward of our own."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    length = inputs["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=mask).logits[:, -length - 1:-1].float()
    return logits.log_softmax(-1).gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)


def _verl_dual_clip_loss(logps, old_logps, advantages, mask, c):
    ratio = torch.exp(logps - old_logps)
    a = advantages.unsqueeze(1)
    clipped = torch.maximum(-a * ratio, -a * ratio.clamp(1 - EPS, 1 + EPS))
    per_token = torch.where(a < 0, torch.minimum(clipped, -a * c), clipped) if c is not None else clipped
    return (per_token * mask).sum() / mask.sum()


@pytest.mark.parametrize("dual_clip", [DUAL_CLIP, None])
def test_trls_loss_with_dual_clip_is_verls(base_dir, tmp_path, dual_clip):
    trainer = _trainer(base_dir, tmp_path, dual_clip=dual_clip)
    assert trainer.args.delta == dual_clip
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    torch.manual_seed(0)
    inputs = trainer._prepare_inputs([dict(trainer.train_dataset[i]) for i in (0, 1) for _ in range(G)])
    mask = inputs["completion_mask"].float()
    assert mask.sum() > 8
    with torch.no_grad():
        logps = _completion_logps(trainer.model, inputs)
    # π_old chosen so the ratios cover every branch: far above c, between 1 + ε and c, inside, below 1 - ε
    ratios = torch.tensor([5.0, 2.0, 1.1, 0.5, 4.0, 0.9, 1.5, 0.3])
    ratios = ratios.repeat(logps.shape[1] // len(ratios) + 1)[:logps.shape[1]].expand_as(logps)
    inputs["old_per_token_logps"] = logps - ratios.log()
    inputs["advantages"] = torch.tensor([-1.0, 0.5, -0.25, 2.0] * 2)

    trl_loss = trainer._compute_loss(trainer.model, inputs)
    trl_loss.backward()
    trl_grads = [p.grad.clone() for p in trainer.model.parameters()]
    trainer.model.zero_grad()
    ref_loss = _verl_dual_clip_loss(_completion_logps(trainer.model, inputs), inputs["old_per_token_logps"],
                                    inputs["advantages"], mask, dual_clip)
    ref_loss.backward()
    assert trl_loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    for trl_grad, p in zip(trl_grads, trainer.model.parameters()):
        torch.testing.assert_close(trl_grad, p.grad, rtol=1e-4, atol=1e-7)
    # the cap binds here: without it the loss is another (so the parameter reaches TRL, or this test fails)
    other = _verl_dual_clip_loss(logps, inputs["old_per_token_logps"], inputs["advantages"], mask,
                                 None if dual_clip else DUAL_CLIP)
    assert other.item() != pytest.approx(ref_loss.item(), rel=1e-3)


def test_a_cap_inside_the_clip_range_is_refused():
    # below 1 + ε TRL's delta would also cap a positive advantage's ratio: not VeRL's dual clip
    with pytest.raises(ConfigError, match=r"grpo.dual_clip \(1.1\) must be above 1 \+ grpo.clip_epsilon"):
        check_dual_clip({"dual_clip": 1.1, "clip_epsilon": EPS})
    check_dual_clip({"dual_clip": 1.3, "clip_epsilon": EPS})
    check_dual_clip({"clip_epsilon": EPS})


def test_dapo_weighs_every_token_of_the_rollout_batch_alike(base_dir, tmp_path):
    """The paper profile's ``loss_type: dapo`` through TRL's loss, micro-batch by micro-batch: each update's loss is
    its tokens' summed loss over half the rollout batch's tokens (2 updates per rollout batch), so every completion
    token of the batch weighs the same, whichever micro-batch or update it falls in. The reference is written out
    here from the masks alone: ratio 1 (π_old = π), so a token's loss is −A in value and −A·∇log π in gradient."""
    trainer = _trainer(base_dir, tmp_path, loss_type="dapo", prompts_per_generation=4, prompts_per_update=2,
                       grad_accum=2)
    assert (trainer.args.steps_per_generation, trainer.args.gradient_accumulation_steps) == (4, 2)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 2
    torch.manual_seed(0)
    batch = [dict(trainer.train_dataset[i]) for i in range(4) for _ in range(G)]
    trainer._prepare_inputs(batch)  # generates the rollout batch and buffers its 4 micro-batches
    micro = trainer._buffered_inputs
    assert len(micro) == 4 and all(len(m["completion_ids"]) == 4 for m in micro)
    masks = [m["completion_mask"].float() for m in micro]
    tokens = sum(m.sum() for m in masks)
    assert len({m.sum().item() for m in masks}) > 1  # unequal micro-batches: a per-micro-batch mean would differ
    advantages = torch.tensor([1.0, -0.5, 0.25, -2.0])
    for update in (micro[:2], micro[2:]):
        trl_loss, ref_loss, mean_loss = 0.0, 0.0, 0.0
        for inputs in update:
            with torch.no_grad():
                inputs["old_per_token_logps"] = _completion_logps(trainer.model, inputs)
            inputs["advantages"] = advantages
            trl_loss = trl_loss + trainer._compute_loss(trainer.model, inputs)
            mask = inputs["completion_mask"].float()
            logps = _completion_logps(trainer.model, inputs)
            per_token = -advantages.unsqueeze(1) * torch.exp(logps - logps.detach())
            ref_loss = ref_loss + (per_token * mask).sum() / (tokens / 2)
            mean_loss = mean_loss + (per_token * mask).sum() / mask.sum() / 2  # bnpo: each micro-batch's mean
        trl_grads = torch.autograd.grad(trl_loss, list(trainer.model.parameters()))
        ref_grads = torch.autograd.grad(ref_loss, list(trainer.model.parameters()))
        assert trl_loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
        assert mean_loss.item() != pytest.approx(ref_loss.item(), rel=1e-3)
        for got, want in zip(trl_grads, ref_grads):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
