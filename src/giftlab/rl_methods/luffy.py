"""LUFFY (Yan et al. 2025): GRPO whose groups mix on-policy rollouts with an off-policy expert trace.

As released (github.com/ElliottYan/LUFFY @ 01f4ae0, ``exp_scripts/train.sh`` and ``luffy/verl/verl/mix_src``):

* each prompt's group of G samples is G − k on-policy rollouts and k expert traces (``n_prefix = k = 1``, the
  whole demonstration: ``min/max_prefix_ratio = 1.0``); every sample is scored by the verifier;
* advantage: GRPO without std normalisation over the **whole mixed group**: A_i = r_i − mean_j r_j;
* token losses, with no PPO clipping (``loss_remove_clip``):

      on-policy token:  ℓ_t = −A · π_θ(y_t) / π_old(y_t)
      expert token:     ℓ_t = −A · f(π_θ(y_t)),   f(p) = p / (p + γ),  γ = 0.1   (policy shaping, no IS weight)

  so an expert token's gradient is −A · γ p / (p + γ)² · ∇log p: large for tokens the policy finds unlikely;
* aggregation: Σ over valid tokens / (padded response length L), minus 0.001 · token-mean entropy, per micro-batch
  of at most 32,768 tokens per GPU (``use_dynamic_bsz``), summed (gradient accumulation 1); no KL.

This trainer divides the token sum by (sequences × L), as TRL's ``dr_grpo`` does, where the released code divides
by L alone (a factor of the micro-batch's sequence count; docs/scale.md lists the departures), and weighs the entropy
bonus against that term as the released update does (:func:`giftlab.rl_methods.base.released_entropy_coef`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from giftlab.lazy import torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

from .base import RELEASED_LAYOUT, RLMethod, demonstration_ids, positive, register, training_entropy_coef


def group_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """A_i = r_i − mean of r over i's group of ``group_size`` consecutive samples (expert ones included); no std."""
    grouped = rewards.view(-1, group_size)
    return (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)


def expert_rows(n_local: int, process_index: int, group_size: int, expert_samples: int) -> list[bool]:
    """Which of this process's ``n_local`` samples are expert traces: the last ``expert_samples`` of every group.

    Groups are consecutive in the global generation batch (TRL repeats each prompt G times) and a group may span
    two processes, so the rule is on the global index ``process_index × n_local + i``.
    """
    start = process_index * n_local
    return [(start + i) % group_size >= group_size - expert_samples for i in range(n_local)]


def shaped_probability(logps: Tensor, gamma: float) -> Tensor:
    """f(p) = p / (p + γ) of p = exp(logps): LUFFY's policy shaping of expert tokens."""
    p = logps.exp()
    return p / (p + gamma)


def token_losses(logps: Tensor, old_logps: Tensor, advantages: Tensor, is_expert: Tensor, gamma: float) -> Tensor:
    """[B, T] per-token losses: −A·π_θ/π_old on rollouts, −A·f(π_θ) on expert traces (``is_expert``: [B] bool)."""
    adv = advantages.unsqueeze(1)
    on_policy = -adv * torch.exp(logps - old_logps)
    off_policy = -adv * shaped_probability(logps, gamma)
    return torch.where(is_expert.unsqueeze(1), off_policy, on_policy)


def aggregate(losses: Tensor, mask: Tensor, entropies: Tensor, max_length: int, entropy_coef: float
              ) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, policy term, mean entropy): Σ_valid ℓ / (B · L) − entropy_coef · token-mean entropy."""
    policy = (losses * mask).sum() / (mask.size(0) * max_length)
    entropy = (entropies * mask).sum() / mask.sum().clamp(min=1)
    return policy - entropy_coef * entropy, policy, entropy


class LuffyMixin:
    """In front of ``trl.GRPOTrainer``: the last ``expert_samples`` completions of every training group are replaced
    by the prompt's demonstration (its token ids + EOS, whole: ``train_grpo`` keeps only the rows whose demonstration
    fits in ``max_completion_length``, and a longer one is refused, never cut), scored by the same reward,
    and trained with :func:`token_losses` / :func:`aggregate`. The dataset needs a ``demonstration`` column.
    Advantages are TRL's own with ``scale_rewards="none"``: exactly :func:`group_advantages` over the mixed group.
    """

    method_params: Mapping[str, Any]  # the checked hyperparameters (RLMethod.trainer_class sets them)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        LUFFY.check(self.method_params, {"num_generations": self.num_generations})  # also when used without a plan

    def _demonstration_ids(self, text: str) -> list[int]:
        return demonstration_ids(self.processing_class, text, self.max_completion_length)

    def _generate_and_score_completions(self, inputs):
        self._luffy_demonstrations = [row["demonstration"] for row in inputs]
        self._luffy_expert = [False] * len(inputs)
        output = super()._generate_and_score_completions(inputs)
        output["is_expert"] = torch.tensor(self._luffy_expert, dtype=torch.bool, device=output["advantages"].device)
        if self.model.training:
            self._metrics["train"]["luffy/expert_fraction"].append(sum(self._luffy_expert) / len(self._luffy_expert))
        return output

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        completion_ids, logprobs = super()._generate_single_turn(prompt_ids, images, multimodal_fields,
                                                                 num_generations, has_tool_images)
        if not self.model.training:  # evaluation samples stay on-policy
            return completion_ids, logprobs
        rows = expert_rows(len(prompt_ids), self.accelerator.process_index, num_generations,
                           self.method_params["expert_samples"])
        completion_ids = list(completion_ids)
        logprobs = None if logprobs is None else list(logprobs)
        for i, expert in enumerate(rows):
            if expert:
                completion_ids[i] = self._demonstration_ids(self._luffy_demonstrations[i])
                if logprobs is not None:  # the sampler never scored these tokens (TRL treats NaN as "no correction")
                    logprobs[i] = [math.nan] * len(completion_ids[i])
        self._luffy_expert = rows
        return completion_ids, logprobs

    def _compute_loss(self, model, inputs):
        completion_ids, mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], mask], dim=1)
        logps, entropies, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True)
        old = inputs.get("old_per_token_logps")
        old = logps.detach() if old is None else old
        is_expert = inputs["is_expert"]
        losses = token_losses(logps, old, inputs["advantages"], is_expert, self.method_params["shaping_gamma"])
        # the bonus weighed against the policy term as in the released update (giftlab.rl_methods.base)
        entropy_coef = training_entropy_coef(self, self.method_params, inputs)
        loss, policy, entropy = aggregate(losses, mask, entropies, self.max_completion_length, entropy_coef)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["entropy_coef"].append(entropy_coef)
        self._metrics[mode]["entropy"].append(self.accelerator.gather(entropy.detach()).mean().item())
        self._metrics[mode]["policy_loss"].append(self.accelerator.gather(policy.detach()).mean().item())
        # mean π_θ on expert tokens (how far the policy has absorbed the demonstrations), over every process's: each
        # holds a share of the batch's expert rows (none, some micro-batches); every process gathers, for each
        # micro-batch, so the gather stays collective
        expert_mask = mask * is_expert.unsqueeze(1)
        sums = torch.stack([(logps.detach().exp() * expert_mask).sum().float(), expert_mask.sum().float()])
        total, count = self.accelerator.gather(sums).view(-1, 2).sum(dim=0)
        if count > 0:  # a float32 division, as before the pooling: one process logs the same bits
            self._metrics[mode]["luffy/expert_token_prob"].append((total / count).item())
        return loss / (self.current_gradient_accumulation_steps if mode == "train" else 1.0)


def _validate(params: Mapping[str, Any]) -> None:
    positive("expert_samples", "shaping_gamma")(params)
    positive("entropy_coef", "released_gpus", "released_micro_batch_tokens",
             allow_zero=("entropy_coef", "released_micro_batch_tokens"))(params)


def _validate_with_grpo(params: Mapping[str, Any], grpo: Mapping[str, Any]) -> None:
    """Every group of ``grpo.num_generations`` samples keeps at least one on-policy rollout."""
    if params["expert_samples"] >= grpo["num_generations"]:
        raise ValueError(f"expert_samples must be < grpo.num_generations ({grpo['num_generations']}), "
                         f"got {params['expert_samples']}")


def _grpo_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    # advantages over the mixed group with no std (grpo_use_std=False), no KL; the loss is the mixin's own, with no
    # dual clip (the released loss_remove_clip run has none): delta None, so the saved config does not show one
    return {"scale_rewards": "none", "beta": 0.0, "delta": None}


LUFFY = register(RLMethod(
    name="luffy",
    label="LUFFY",
    method_class="Unified Paradigms",
    defaults={"expert_samples": 1, "shaping_gamma": 0.1, "entropy_coef": 0.001, **RELEASED_LAYOUT},
    grpo_overrides=_grpo_overrides,
    mixin="giftlab.rl_methods.luffy:LuffyMixin",
    needs_demonstrations=True,
    validate=_validate,
    validate_with_grpo=_validate_with_grpo,
    description="off-policy expert traces inside each GRPO group, policy shaping f(p) = p/(p+γ)",
))

__all__: Sequence[str] = ["LUFFY", "LuffyMixin", "group_advantages", "expert_rows", "shaped_probability",
                          "token_losses", "aggregate"]
