"""ReLIFT (Ma et al. 2025): on-policy GRPO interleaved with SFT on the questions the policy fails completely.

As released (github.com/TheRoadQaQ/ReLIFT @ eb95454, ``examples/math-7b/train.sh``, ``relift/verl/verl/relift``):

* plain on-policy GRPO with LUFFY's Dr.GRPO-style settings: no std normalisation, no PPO clipping, token sum /
  padded length, entropy bonus 0.001 (weighed against the policy term as in the released update:
  :func:`giftlab.rl_methods.base.released_entropy_coef`), gradient clip 0.7;
* after scoring a batch, every question whose G rollouts **all** have the fail reward (0) is "hardest": its
  demonstration enters an SFT buffer, the new ones in front of the old ones (``DataProto.concat([new, buffer])``);
* after the RL update, when the buffer holds ≥ ``sft_batch`` (128) items, the first ``sft_batch`` are popped
  (the rest stay) and one SFT step is taken on them, with a separate AdamW (lr 1e-6, the RL lr: here
  ``sft_lr_ratio`` × ``grpo.lr``, so a profile that scales the RL lr scales this one with it; clip 1.0), in
  micro-batches of ``sft_micro_batch`` (4), with weight decay 0.01 (verl's default: ``sft_weight_decay``):

      L_SFT = token-mean over the demonstration (+ EOS) of −log π_θ(y_t)  −  0.001 · token-mean H(π_θ(·|s_t))

  with H = logsumexp(z) − Σ_v softmax(z)_v z_v (verl's ``entropy_from_logits``), each micro-batch's loss divided by
  ``sft_batch / sft_micro_batch`` (verl's ``gradient_accumulation``, 32). Each of W processes holds only
  ``sft_batch / W`` demonstrations (verl does not divide the SFT mini-batch by the world size, as it does PPO's),
  so after the data-parallel average the step's gradient is the mean over processes of each one's sum of its
  micro-batch means / (sft_batch / sft_micro_batch): the batch mean / W when sft_micro_batch divides sft_batch / W
  (1/8 at the released 8 GPUs, the mean on one process). Adam cancels a constant scale; it changes how often the
  clip (1.0) binds.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from giftlab.lazy import torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

from .base import RELEASED_LAYOUT, RLMethod, demonstration_ids, positive, register, training_entropy_coef

STATE_FILE = "relift_state-rank{rank}.pt"  # one per process: the SFT optimiser's state is sharded under FSDP
LEGACY_STATE_FILE = "relift_state.pt"      # older code: process 0's state only
FAIL_REWARD = 0.0  # the verifier's "wrong" (our reward has no format penalty, so a group of fails is all zeros)


def hardest_questions(questions: Sequence[int], rewards: Tensor, group_size: int) -> list[int]:
    """The questions (one id per group of ``group_size`` samples, in batch order) whose samples all failed."""
    grouped = rewards.view(-1, group_size)
    if len(questions) != grouped.size(0):
        raise ValueError(f"{len(questions)} questions for {grouped.size(0)} groups")
    failed = (grouped == FAIL_REWARD).all(dim=1).tolist()
    return [q for q, f in zip(questions, failed) if f]


class HardQuestionBuffer:
    """ReLIFT's SFT buffer of question ids: new failures go in front; a full batch is popped from the front."""

    def __init__(self, batch_size: int, items: Sequence[int] = ()):
        self.batch_size = int(batch_size)
        self.items = list(items)

    def add(self, questions: Sequence[int]) -> None:
        self.items = list(questions) + self.items

    def pop_batch(self) -> list[int] | None:
        """The first ``batch_size`` items once there are that many (they leave the buffer), else None."""
        if len(self.items) < self.batch_size:
            return None
        batch, self.items = self.items[: self.batch_size], self.items[self.batch_size:]
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "items": list(self.items)}


def entropy_from_logits(logits: Tensor) -> Tensor:
    """H(softmax(z)) = logsumexp(z) − Σ_v softmax(z)_v z_v, per position."""
    return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)


def sft_loss(logits: Tensor, labels: Tensor, entropy_coef: float) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, NLL, entropy) of one micro-batch: token-mean NLL − ``entropy_coef`` · token-mean entropy.

    ``logits``: [B, T, V] predicting ``labels`` [B, T] (already shifted; -100 = not trained).
    """
    mask = labels != -100
    logits = logits[mask]
    logits = logits if logits.dtype == torch.float64 else logits.float()  # fp32 at least (fp64 stays: tests)
    targets = labels[mask]
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="mean")
    entropy = entropy_from_logits(logits).mean()
    return nll - entropy_coef * entropy, nll, entropy


class ReliftMixin:
    """In front of ``trl.GRPOTrainer``: fills a :class:`HardQuestionBuffer` from each scored generation batch and,
    after the batch's last optimiser step, takes ReLIFT's SFT step when the buffer is full. The dataset needs the
    columns ``row`` (the question's index) and ``demonstration``; the buffer and the SFT optimiser are saved in
    each checkpoint, one file per process (``relift_state-rank<r>.pt``: the optimiser's state is sharded under
    FSDP), and each process restores its own on resume."""

    method_params: Mapping[str, Any]  # the checked hyperparameters (RLMethod.trainer_class sets them)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_sft_split(self.method_params, self.accelerator.num_processes)
        self.add_callback(_step_end_callback(self))

    # ------------------------------------------------------------------ state
    def _relift_init(self) -> None:
        if getattr(self, "_relift_buffer", None) is None:
            self._relift_buffer = HardQuestionBuffer(self.method_params["sft_batch"])
            params = [p for p in self.model.parameters() if p.requires_grad]
            lr = self.method_params["sft_lr_ratio"] * self.args.learning_rate  # released: 1e-6 / 1e-6
            # released: AdamW with verl's default weight decay 0.01 (actor.optim.weight_decay is not set)
            self._relift_optimizer = torch.optim.AdamW(params, lr=lr,
                                                       weight_decay=self.method_params["sft_weight_decay"])
            self._relift_steps = 0
            rows = self.train_dataset
            self._relift_rows = {int(r["row"]): (r["prompt"], r["demonstration"]) for r in rows}

    def _save_checkpoint(self, model, trial):
        """Every process writes its own ``relift_state-rank<r>.pt``: under FSDP its SFT optimiser holds the AdamW
        moments of its own parameter shard only (the buffer and the step count, the same on every process, go in
        each file). The checkpoint is stamped complete (``CompleteMarker.on_save``, after this returns) only once
        every process has written its file."""
        super()._save_checkpoint(model, trial)
        self._relift_init()
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        torch.save({"buffer": self._relift_buffer.state_dict(), "sft_steps": self._relift_steps,
                    "optimizer": self._relift_optimizer.state_dict()},
                   os.path.join(folder, STATE_FILE.format(rank=self.accelerator.process_index)))
        self.accelerator.wait_for_everyone()

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        self._relift_init()
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, STATE_FILE.format(rank=self.accelerator.process_index))
        if not os.path.exists(path):
            legacy = os.path.join(checkpoint, LEGACY_STATE_FILE)
            if not os.path.exists(legacy):
                raise FileNotFoundError(f"{path}: missing; this checkpoint was not written by ReLIFT")
            if self.accelerator.num_processes > 1:
                raise ValueError(f"{legacy}: one ReLIFT state for all {self.accelerator.num_processes} processes "
                                 f"(older code; under FSDP it holds process 0's optimiser shard only); delete "
                                 f"{os.path.dirname(checkpoint)} to start this run again")
            path = legacy  # one process: the older single file is this process's own state
        from giftlab.training.checkpoints import load_location

        state = torch.load(path, map_location=load_location(self.accelerator.device), weights_only=False)
        self._relift_buffer = HardQuestionBuffer(state["buffer"]["batch_size"], state["buffer"]["items"])
        self._relift_steps = int(state["sft_steps"])
        self._relift_optimizer.load_state_dict(state["optimizer"])

    # ------------------------------------------------------------------ RL loss
    def _compute_loss(self, model, inputs):
        # TRL's entropy bonus (a token mean beside dr_grpo's Σ ℓ / (B × L)) weighed against the policy term as in the
        # released update (giftlab.rl_methods.base.released_entropy_coef); TRL reads entropy_coef per micro-batch
        self.entropy_coef = training_entropy_coef(self, self.method_params, inputs)
        return super()._compute_loss(model, inputs)

    # ------------------------------------------------------------------ buffer
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._relift_rewards = rewards_per_func  # gathered over processes: the whole generation batch
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self.model.training:
            from accelerate.utils import gather_object

            self._relift_init()
            G = self.num_generations
            rows = gather_object([int(r["row"]) for r in inputs])  # every process: the whole batch, in order
            rewards = (self._relift_rewards * self.reward_weights.to(self._relift_rewards.device)).nansum(dim=1)
            hard = hardest_questions(rows[::G], rewards.cpu(), G)
            self._relift_buffer.add(hard)
            self._metrics["train"]["relift/hard_questions"].append(float(len(hard)))
            self._metrics["train"]["relift/buffer"].append(float(len(self._relift_buffer.items)))
        return output

    # ------------------------------------------------------------------ SFT step
    def _relift_step_end(self) -> None:
        """Called after every optimiser step; acts after the last update of a generation batch."""
        updates_per_batch = max(1, self.args.steps_per_generation // self.args.gradient_accumulation_steps)
        if self.state.global_step % updates_per_batch:
            return
        self._relift_init()
        batch = self._relift_buffer.pop_batch()
        if batch is not None:
            self._relift_sft_step(batch)

    def _relift_sft_step(self, questions: Sequence[int]) -> None:
        tok = self.processing_class
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        mine = list(questions)[rank::world]
        micro = self.method_params["sft_micro_batch"]
        chunks = [mine[i:i + micro] for i in range(0, len(mine), micro)]
        # released (sft_update_policy): each micro-batch's loss / (sft_batch / sft_micro_batch), whatever share of
        # the batch this process holds (with W processes: the batch mean / W when micro divides sft_batch / W)
        accumulation = self.method_params["sft_batch"] / micro
        model = self.model_wrapped
        was_training = model.training
        model.train()
        self._relift_optimizer.zero_grad(set_to_none=True)
        nll_sum = ent_sum = 0.0
        for chunk in chunks:
            input_ids, attention_mask, labels = self._relift_batch(tok, chunk)
            with self.accelerator.autocast():
                logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            loss, nll, ent = sft_loss(logits[:, :-1], labels[:, 1:], self.method_params["sft_entropy_coef"])
            self.accelerator.backward(loss / accumulation)
            nll_sum, ent_sum = nll_sum + nll.item(), ent_sum + ent.item()
        params = [p for g in self._relift_optimizer.param_groups for p in g["params"]]
        grad_norm = self.accelerator.clip_grad_norm_(params, self.method_params["sft_max_grad_norm"])
        self._relift_optimizer.step()
        self._relift_optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
        self._relift_steps += 1
        # the micro-batch means of every process's share (each trains questions[rank::world]): only the main process
        # writes the step log, which held its own share's mean alone
        mine = torch.tensor([nll_sum, ent_sum, float(len(chunks))], dtype=torch.float64, device=self.accelerator.device)
        nll_sum, ent_sum, n = self.accelerator.gather(mine).view(-1, 3).sum(dim=0).tolist()
        n = max(1.0, n)
        self._metrics["train"]["relift/sft_steps"].append(float(self._relift_steps))
        self._metrics["train"]["relift/sft_nll"].append(nll_sum / n)
        self._metrics["train"]["relift/sft_entropy"].append(ent_sum / n)
        self._metrics["train"]["relift/sft_grad_norm"].append(float(grad_norm))

    def _relift_batch(self, tok, questions: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Right-padded prompt + demonstration + EOS; labels -100 on the prompt and the padding."""
        seqs, labels = [], []
        for q in questions:
            prompt, demonstration = self._relift_rows[q]
            p_ids = tok(prompt, add_special_tokens=True)["input_ids"]  # as TRL encodes the prompt
            # whole, within ReLIFT's response length (the rollouts'): train_grpo drops longer ones, never cut
            d_ids = demonstration_ids(tok, demonstration, self.max_completion_length)
            seqs.append(p_ids + d_ids)
            labels.append([-100] * len(p_ids) + d_ids)
        width = max(len(s) for s in seqs)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        device = self.accelerator.device
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=device)
        attention_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
        label_ids = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels], device=device)
        return input_ids, attention_mask, label_ids


def _step_end_callback(trainer):
    """A ``TrainerCallback`` that runs the trainer's ReLIFT step after each optimiser step (``on_step_end`` comes
    after the RL optimiser step and its zero_grad, and before that step's checkpoint is saved)."""
    from transformers import TrainerCallback

    class ReliftStepEnd(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            trainer._relift_step_end()
            return control

    return ReliftStepEnd()


def check_sft_split(params: Mapping[str, Any], processes: int) -> None:
    """Every process must run as many SFT micro-batches: each forward and backward is collective under DDP / FSDP
    (gradient all-reduce, parameter all-gather), so a process with one more would wait for the others forever.
    Process r trains ``questions[r::processes]`` of the ``sft_batch``, ``sft_micro_batch`` at a time."""
    batch, micro = int(params["sft_batch"]), int(params["sft_micro_batch"])
    counts = {math.ceil(len(range(rank, batch, processes)) / micro) for rank in range(max(1, processes))}
    if len(counts) > 1:
        raise ValueError(f"unified.relift.sft_batch: {batch} demonstrations over {processes} processes give them "
                         f"{min(counts)} to {max(counts)} micro-batches of sft_micro_batch {micro}, and each is a "
                         f"collective step (a process with fewer would leave the others waiting): use a multiple of "
                         f"{processes}")


def _validate(params: Mapping[str, Any]) -> None:
    positive("sft_batch", "sft_micro_batch", "sft_lr_ratio", "sft_max_grad_norm", "max_grad_norm")(params)
    positive("sft_entropy_coef", "entropy_coef", "sft_weight_decay", "released_gpus", "released_micro_batch_tokens",
             allow_zero=("sft_entropy_coef", "entropy_coef", "sft_weight_decay", "released_micro_batch_tokens"))(params)


def _grpo_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    # Dr.GRPO-style on-policy GRPO as in LUFFY: no std, no clip, token sum / (B × L), entropy bonus, clip 0.7
    return {"scale_rewards": "none", "beta": 0.0, "loss_type": "dr_grpo", "epsilon": math.inf, "delta": None,
            "entropy_coef": params["entropy_coef"], "max_grad_norm": params["max_grad_norm"]}


RELIFT = register(RLMethod(
    name="relift",
    label="ReLIFT",
    method_class="Unified Paradigms",
    defaults={"sft_batch": 128, "sft_micro_batch": 4, "sft_lr_ratio": 1.0, "sft_max_grad_norm": 1.0,
              "sft_entropy_coef": 0.001, "sft_weight_decay": 0.01, "entropy_coef": 0.001, "max_grad_norm": 0.7,
              **RELEASED_LAYOUT},
    grpo_overrides=_grpo_overrides,
    mixin="giftlab.rl_methods.relift:ReliftMixin",
    needs_demonstrations=True,
    validate=_validate,
    description="GRPO interleaved with SFT on the demonstrations of questions whose rollouts all fail",
))

__all__ = ["RELIFT", "ReliftMixin", "HardQuestionBuffer", "check_sft_split", "hardest_questions", "entropy_from_logits",
           "sft_loss"]
