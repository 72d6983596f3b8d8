"""GRPO checkpoints that resume inside a rollout batch.

TRL's ``GRPOTrainer`` generates one rollout batch, then trains ``steps_per_generation`` micro-steps on slices of
it (the paper profile: 128 prompts per batch, 64 per update, so 2 optimiser updates per batch). Where it is in the
batch (``_step``) and the batch itself (``_buffered_inputs``) live only in memory. A checkpoint saved between the
updates of one batch (``save_steps``, or a preemption at any step) used to resume with TRL's counter at 0: it
generated that batch again and trained it from its first slice, so every later update trained the second half of
one batch with the first half of the next, some prompts twice and others never, and the run stopped at
``max_steps`` before the last half batch. ReLIFT's SFT step, keyed on the update's place in its batch, moved too.

:class:`ResumableRollouts` stores both in each checkpoint, one file per process (the batch only when the
checkpoint falls inside one), and restores them on resume: a resumed run trains exactly what an uninterrupted run
trains. The Trainer restores the random state, the optimiser and the data position itself.
"""

from __future__ import annotations

import os

import torch

FILE = "rollouts-rank{rank}.pt"


class ResumableRollouts:
    """In front of ``trl.GRPOTrainer`` (and any RL method's mixin): TRL's rollout position and buffered batch
    saved with every checkpoint and restored on resume."""

    def _generate_every(self) -> int:
        return self.args.steps_per_generation * self.num_iterations

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        inside_a_batch = self._step % self._generate_every() != 0
        torch.save({"step": self._step, "buffered_inputs": self._buffered_inputs if inside_a_batch else None},
                   os.path.join(folder, FILE.format(rank=self.accelerator.process_index)))
        self.accelerator.wait_for_everyone()  # every process's file is written before the checkpoint is stamped

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, FILE.format(rank=self.accelerator.process_index))
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: missing, so this checkpoint cannot resume where its rollout batch "
                                    f"stopped (written by older code?); delete {os.path.dirname(checkpoint)} "
                                    f"to start this run again")
        state = torch.load(path, map_location=self.accelerator.device, weights_only=False)
        expected = self.state.global_step * self.args.gradient_accumulation_steps
        if state["step"] != expected:
            raise ValueError(f"{path}: rollout step {state['step']}, but checkpoint step {self.state.global_step} × "
                             f"{self.args.gradient_accumulation_steps} accumulation steps is {expected}")
        self._step, self._buffered_inputs = state["step"], state["buffered_inputs"]


def resumable(trainer_class: type) -> type:
    """``trainer_class`` (TRL's GRPOTrainer, or a method's trainer built on it) with :class:`ResumableRollouts`."""
    return type(f"Resumable{trainer_class.__name__}", (ResumableRollouts, trainer_class), {})
