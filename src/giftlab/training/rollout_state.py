"""GRPO checkpoints that resume inside a rollout batch.

TRL's ``GRPOTrainer`` generates one rollout batch, then trains ``steps_per_generation`` micro-steps on slices of
it (the paper profile: 128 prompts per batch, 64 per update, so 2 optimiser updates per batch). Where it is in the
batch (``_step``) and the batch itself (``_buffered_inputs``) live only in memory. A checkpoint saved between the
updates of one batch (``save_steps``, or a preemption at any step) would otherwise resume with TRL's counter at 0:
it would generate that batch again and train it from its first slice, so every later update would train the second
half of one batch with the first half of the next, some prompts twice and others never, and the run would stop at
``max_steps`` before the last half batch (ReLIFT's SFT step, keyed on the update's place in its batch, would move
too).

:class:`ResumableRollouts` stores both in each checkpoint, one file per process (the batch only when the
checkpoint falls inside one), and restores them on resume: a resumed run trains exactly what an uninterrupted run
trains. The Trainer restores the random state, the optimiser and the data position itself; the prompt order of
the epoch it resumes in is :class:`EpochOrder`'s.
"""

from __future__ import annotations

import hashlib
import os

import torch

from giftlab.training.checkpoints import load_location, trainer_epoch

FILE = "rollouts-rank{rank}.pt"


class EpochOrder(torch.utils.data.Sampler):
    """TRL's ``RepeatSampler``, its order a function of the epoch: epoch ``e`` takes the ``e + 1``-th permutation of
    its seeded generator however the run got there, as an uninterrupted run does.

    ``RepeatSampler`` seeds its generator once, when built, and draws the next permutation at every ``__iter__``
    (trl/trainer/utils.py), with no ``set_epoch``. A resumed run builds a new one, and transformers 5.17's Trainer
    does not replay the epochs before the checkpoint (``_inner_training_loop``: ``for epoch in range(epochs_trained,
    ...)``, then ``skip_first_batches``): resumed in epoch 2, the run trained epoch 1's prompt order from the
    checkpoint's position, other prompts than the uninterrupted run's. The epoch is read from the trainer's state
    (``epoch_of``) when an epoch starts, not told through ``set_epoch``: under several processes accelerate's resumed
    dataloader (``SkipBatchSampler`` over ``BatchSamplerShard``) does not pass ``set_epoch`` on to the sampler
    (accelerate 1.15 ``DataLoaderShard.set_epoch`` looks two levels down; the sampler is three)."""

    def __init__(self, sampler, epoch_of):
        self.sampler = sampler
        self.epoch_of = epoch_of

    def __iter__(self):
        if getattr(self.sampler, "shuffle", False) and self.sampler.seed is not None:
            self.sampler.generator.manual_seed(self.sampler.seed)
            for _ in range(int(self.epoch_of())):  # the permutations of the epochs before
                torch.randperm(self.sampler.num_samples, generator=self.sampler.generator)
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class ResumableRollouts:
    """In front of ``trl.GRPOTrainer`` (and any RL method's mixin): TRL's rollout position and buffered batch
    saved with every checkpoint and restored on resume, and each epoch's prompt order (:class:`EpochOrder`)."""

    def _get_train_sampler(self, dataset=None):
        return EpochOrder(super()._get_train_sampler(dataset), lambda: trainer_epoch(self.state))

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
        state = torch.load(path, map_location=load_location(self.accelerator.device), weights_only=False)
        expected = self.state.global_step * self.args.gradient_accumulation_steps
        if state["step"] != expected:
            raise ValueError(f"{path}: rollout step {state['step']}, but checkpoint step {self.state.global_step} × "
                             f"{self.args.gradient_accumulation_steps} accumulation steps is {expected}")
        self._step, self._buffered_inputs = state["step"], state["buffered_inputs"]


def rollout_seed(seed: int, group: int) -> int:
    """The global random state's seed of the processes of colocated-vLLM group ``group`` (one group per tensor-parallel
    engine): a 31-bit hash of (run seed, group), so every run seed and group has its own stream (``seed + rank``
    would give seed 1's rank 0 seed 0's rank 1 stream)."""
    digest = hashlib.sha256(f"{int(seed)}\x00{int(group)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class SeededColocatedVLLM:
    """In front of ``trl.GRPOTrainer``: the run seed, not the rank, seeds the random state colocated vLLM samples from.

    TRL 1.16 builds each process's engine with ``seed=process_index // vllm_tensor_parallel_size``
    (trl/generation/vllm_generation.py, ``_init_vllm``), and vLLM (in the training process under
    ``distributed_executor_backend="external_launcher"``) reseeds python, numpy, torch and CUDA with it while the
    engine is built (vllm 0.31 v1/worker/gpu_worker.py: ``set_random_seed(model_config.seed)`` in ``init_device`` and
    ``compile_or_warm_up_model``), after TRL's own ``set_seed(args.seed, device_specific=True)``. Requests carry no seed
    of their own, so vLLM draws them from those generators (model runner V2: ``np.random.randint`` per request; V1:
    the device's default generator): every training seed sampled the same rollout noise. Reseeded here once the
    engine is built, identically within a tensor-parallel group (its engines must sample alike, as TRL's seed
    intends); the Trainer saves and restores this state per process in every checkpoint (``rng_state_{rank}.pth``).

    Without vLLM, on several processes, each generates with the policy from the global state TRL seeded
    ``args.seed + process_index`` (``set_seed(..., device_specific=True)``): training seed 1's rank 1 drew seed 2's
    rank 0 stream. Reseeded there with :func:`rollout_seed` of (run seed, rank); one process keeps ``args.seed``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from transformers import set_seed

        if getattr(self, "use_vllm", False) and getattr(self, "vllm_mode", None) == "colocate":
            group = self.accelerator.process_index // max(1, int(self.args.vllm_tensor_parallel_size))
            set_seed(rollout_seed(self.args.seed, group))
        elif not getattr(self, "use_vllm", False) and int(getattr(self.accelerator, "num_processes", 1)) > 1:
            set_seed(rollout_seed(self.args.seed, self.accelerator.process_index))


def resumable(trainer_class: type) -> type:
    """``trainer_class`` (TRL's GRPOTrainer, or a method's trainer built on it) with :class:`ResumableRollouts` and
    :class:`SeededColocatedVLLM`."""
    return type(f"Resumable{trainer_class.__name__}", (ResumableRollouts, SeededColocatedVLLM, trainer_class), {})
