"""One SFT trainer for every objective: a transformers ``Trainer`` whose loss is chosen by name.

Everything except the per-token loss is shared across objectives — template, EOS, masking,
right truncation, batch, schedule, precision, and the normalisation: the sum of per-token losses
over the whole optimiser step divided by its number of response tokens (``num_items_in_batch``),
so gradient accumulation does not change the objective.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from giftlab.cli import ConfigError
from giftlab.data import example_digest, tokenize_sft_example
from giftlab.io import atomic_dir, write_json_atomic
from giftlab.models import weights_in_every_process
from giftlab.objectives import TokenBatch, diagnostic_sums, get_objective
from giftlab.objectives.heads import choose_backend, chunked_loss, head_chunk_size
from giftlab.profiling import matmul_flops, phase
from giftlab.training.batches import PadCollator, response_positions
from giftlab.training.checkpoints import (CompleteMarker, export_model, last_complete_checkpoint, prepare_work_dir,
                                          trainer_epoch)
from giftlab.training.gradient_precision import ReduceInFp32, accelerator_config
from giftlab.training.preemption import PreemptionCheckpoint
from giftlab.training.sharded import (call_with_head, fp32_master_weights, load_gathered, match_forward_dtype,
                                      rank_and_world, unwrap, vocab_size)
from giftlab.training.tracking import DEFAULT_TRACKERS, StepLog, resolve_report_to, use_tensorboard
from giftlab.training.weight_decay import DecayEveryParameter, with_optimizer_groups

log = logging.getLogger(__name__)
REFERENCE_MODES = ("exact", "cached")  # giftlab.training.reference: the cached mode and its error bound


@dataclass
class SFTSettings:
    epochs: int                      # the LR schedule's horizon, and the epochs trained unless stop_epoch says fewer
    batch_size: int
    lr: float
    max_length: int
    grad_accum: int = 1
    lr_scheduler: str = "constant"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    adam_betas: Sequence[float] = (0.9, 0.999)
    max_grad_norm: float = 1.0
    loss_head: str = "auto"
    loss_backend: str = "torch"      # chunked head: "torch" loop or the fused "triton" kernel (SFT / exact GIFT)
    # each epoch's shuffle cut to whole optimiser steps (batch_size x grad_accum x processes), as the released verl
    # trainer's drop_last: every step then has E.1's global batch; off, an epoch ends in one short step (the rest)
    drop_last: bool = False
    bf16: bool = False
    export_dtype: str | None = None  # e.g. "bfloat16": exports half the size of the fp32 master weights
    seed: int = 0
    logging_steps: int = 10
    report_to: Sequence[str] = DEFAULT_TRACKERS  # sft.report_to: tensorboard, wandb, mlflow (giftlab.training.tracking)
    reference: str = "exact"         # the base's log-probs: a live frozen forward ("exact") or the "cached" top-k
    # the last epoch trained (None: epochs) of the same `epochs`-epoch schedule: its checkpoints are the longer run's
    # (giftlab.plan: runs whose later epochs nothing reads stop at sft.rl_epoch)
    stop_epoch: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def trained_epochs(self) -> int:
        return self.epochs if self.stop_epoch is None else self.stop_epoch

    def __post_init__(self):
        if self.stop_epoch is not None and not 1 <= self.stop_epoch <= self.epochs:
            raise ConfigError(f"config: settings.stop_epoch: {self.stop_epoch} is not an epoch of 1..{self.epochs}")
        if self.reference not in REFERENCE_MODES:
            raise ConfigError(f"config: sft.reference: {self.reference!r} is not one of {', '.join(REFERENCE_MODES)}")
        # an unknown tracker or a missing package fails here, before any model loads (one line naming the key)
        self.report_to = resolve_report_to(self.report_to, "sft.report_to")

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], **more) -> "SFTSettings":
        """From a job's ``settings`` mapping; an unknown key is a one-line ConfigError, not a TypeError."""
        known = {f.name for f in fields(cls)}
        for key in settings:
            if key not in known:
                raise ConfigError(f"config: settings.{key}: not an SFT setting (one of {', '.join(sorted(known))})")
        for f in fields(cls):
            if f.default is MISSING and f.default_factory is MISSING and f.name not in {**settings, **more}:
                raise ConfigError(f"config: settings.{f.name}: missing (a required SFT setting)")
        return cls(**settings, **more)


class SFTDataset(Dataset):
    """The tokenised examples (:func:`giftlab.data.tokenize_sft_example`). ``truncated``: kept examples longer than
    ``max_length``, whose response was cut (right truncation, E.1: its end and its EOS are not trained);
    ``dropped``: examples with no response token left after the cut; :meth:`row_digests`: every row's
    :func:`giftlab.data.example_digest`, dropped rows included (what a reference cache of these rows records)."""

    def __init__(self, rows, tokenizer, solution_key: str, max_length: int):
        # "row": the example's index in ``rows``, where a reference cache (giftlab.training.reference) keeps it
        full = [tokenize_sft_example(tokenizer, r["question"], r[solution_key], sys.maxsize) for r in rows]
        cut = [len(f["input_ids"]) > max_length for f in full]
        self.examples = [{**{k: v[:max_length] for k, v in f.items()}, "row": i} for i, f in enumerate(full)]
        self._every_row = self.examples
        kept = [any(l != -100 for l in e["labels"][1:]) for e in self.examples]
        self.examples = [e for e, keep in zip(self.examples, kept) if keep]
        self.truncated = sum(c and keep for c, keep in zip(cut, kept))
        self.dropped = len(kept) - len(self.examples)
        if not self.examples:
            raise ValueError("no SFT example has a response token left after truncation; raise sft.max_length")

    def row_digests(self) -> list[bytes]:
        return [example_digest(e) for e in self._every_row]

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


class ObjectiveTrainer(DecayEveryParameter, ReduceInFp32, Trainer):
    """``Trainer`` with a pluggable per-token objective, a frozen reference and a PSFT snapshot; AdamW decays every
    parameter and FSDP reduces gradients in fp32, as verl's SFT trainer
    (:class:`~giftlab.training.weight_decay.DecayEveryParameter`,
    :class:`~giftlab.training.gradient_precision.ReduceInFp32`)."""

    def __init__(self, *args, objective, ref_model=None, ref_cache=None, old_model=None, loss_head: str = "auto",
                 loss_backend: str = "torch", drop_last: bool = False, schedule_steps: int | None = None, **kwargs):
        self.drop_last = drop_last  # before super().__init__: nothing builds a sampler there, but keep it set first
        self.schedule_steps = schedule_steps
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.loss_head = loss_head
        self.loss_backend = loss_backend
        # Frozen helpers live where the policy trains (the Trainer moves only the policy).
        self.ref_model = ref_model.to(self.args.device) if ref_model is not None else None
        self.ref_cache = ref_cache  # read instead of ref_model's forward (sft.reference: cached)
        self.old_model = old_model.to(self.args.device) if old_model is not None else None
        # Our loss is already a token mean over the whole accumulated step (num_items_in_batch).
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        self._diag_sums: dict[str, float] = {}

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The LR schedule over ``schedule_steps`` (all ``sft.epochs``) where the run trains fewer (``stop_epoch``):
        its learning rates, warm-up included, are the longer run's step for step."""
        return super().create_scheduler(self.schedule_steps or num_training_steps, optimizer)

    def _get_train_sampler(self, train_dataset=None):
        """:class:`WholeStepSampler`, not the Trainer's own sampler, which goes wrong three ways.

        Training seeds: with one process the Trainer's sampler is accelerate's ``SeedableRandomSampler``, seeded
        ``data_seed + epoch`` (accelerate 1.15), so training seed 1's epoch 1 was seed 2's epoch 0: the replicates of
        config/replication.yaml (seeds 1, 2, 3, 4) shared all but one epoch's shuffle with their neighbours.
        :class:`WholeStepSampler` seeds each epoch with a hash of (seed, epoch) (:func:`epoch_seed`).

        ``drop_last``: each epoch's shuffle is cut to whole optimiser steps. The Trainer takes its last step of an
        epoch with whatever micro-batches are left (transformers 5.17 ``Trainer._inner_training_loop``:
        ``num_batches = ... else remainder``): at the paper's 10,000 examples, 2 per GPU x 8 steps x 8 GPUs, 78 steps
        of 128 and a 79th of 16. Several processes: a run resumed mid-epoch (a preemption's checkpoint) must take
        that epoch's shuffle, which accelerate's ``set_epoch`` does not reach (:class:`WholeStepSampler`); with a
        step of one example nothing is dropped."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        step_size = global_batch_size(self.args) if self.drop_last else 1
        return WholeStepSampler(len(dataset), step_size, seed, epoch_of=lambda: trainer_epoch(self.state))

    @staticmethod
    def _masked_logits(model, inputs, mask):
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return out.logits[:, :-1][mask]

    def _chunk_size(self, model, n_tokens: int) -> int | None:
        """None for the plain head; a chunk size for the chunked one (the head's rule for ``sft.loss_head``)."""
        has_bias = getattr(unwrap(model).get_output_embeddings(), "bias", None) is not None
        return head_chunk_size(self.loss_head, n_tokens, vocab_size(model), has_bias)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mask, targets = response_positions(inputs["labels"])
        chunk = self._chunk_size(model, targets.numel()) if model.training else None
        old_logprobs = None
        if self.objective.needs_old:
            # under the policy's autocast (sft.bf16: accelerate wraps only the prepared policy's forward): an fp32
            # snapshot of the same weights would give r = π_θ/π_old ≠ 1 right after a snapshot, clipping on noise;
            # with the chunked head, a chunk at a time as the policy's own log-probs (full [N, V] logits and their
            # fp32 log-softmax took ~25 GB per step at 2 x 8,192 tokens of Qwen's vocabulary)
            with torch.no_grad(), self.accelerator.autocast():
                if chunk is None:
                    old = self._masked_logits(self.old_model, inputs, mask).float().log_softmax(-1)
                    old_logprobs = old.gather(-1, targets[:, None]).squeeze(-1)
                else:
                    old_logprobs = call_with_head(
                        self.old_model, lambda hidden, weight: chunked_label_logprobs(
                            hidden[:, :-1][mask], weight, targets, chunk),
                        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        if chunk is None:
            logits = self._masked_logits(model, inputs, mask)
            ref_logits = None
            if self.objective.needs_ref and self.ref_cache is not None:
                ref_logits = self._cached_reference(inputs, mask, targets).dense()
            elif self.objective.needs_ref:
                with torch.no_grad():
                    ref_logits = self._masked_logits(self.ref_model, inputs, mask)
            batch = TokenBatch(logits=logits, labels=targets, ref_logits=ref_logits, old_logprobs=old_logprobs)
            loss_sum = self.objective(batch).sum()
            if model.training:
                with torch.no_grad():
                    self._record(diagnostic_sums(batch, self.objective))
        else:
            loss_sum = self._chunked_loss_sum(model, inputs, mask, targets, old_logprobs, chunk)
        denom = num_items_in_batch if num_items_in_batch is not None else targets.numel()
        if torch.is_tensor(denom):
            denom = denom.to(loss_sum.device)
        loss = loss_sum / denom
        if model.training and num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # num_items_in_batch counts every process's tokens while DDP/FSDP average the gradients
            # over processes: scale back, as transformers' own compute_loss does.
            loss = loss * self.accelerator.num_processes
        return (loss, {}) if return_outputs else loss

    def _chunked_loss_sum(self, model, inputs, mask, targets, old_logprobs, chunk: int):
        """The loss sum through the chunked head, formed inside each model's own forward (FSDP-safe: the unit that
        owns ``lm_head`` has gathered it there; :func:`giftlab.training.sharded.call_with_head`)."""
        ids = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        ref: dict = {}
        if self.objective.needs_ref and self.ref_cache is not None:
            ref["logits"] = self._cached_reference(inputs, mask, targets)  # densified one chunk at a time
        elif self.objective.needs_ref:
            def keep_ref(hidden, weight):
                ref["hidden"], ref["weight"] = hidden[:, :-1][mask], weight
                return hidden.new_zeros(())

            with torch.no_grad():
                call_with_head(self.ref_model, keep_ref, **ids)
        stats: dict = {}

        def loss(hidden, weight):
            return chunked_loss(self.objective, hidden[:, :-1][mask], weight, targets, ref.get("hidden"),
                                ref.get("weight"), old_logprobs, chunk, ref_logits=ref.get("logits"), stats=stats,
                                diagnose=True, backend=self.loss_backend)[0]

        loss_sum = call_with_head(model, loss, **ids)
        self._record(stats["diag_sums"])
        return loss_sum

    def _cached_reference(self, inputs, mask, targets):
        """The batch's rows of the reference cache (giftlab.training.reference.CachedRows), checked against it."""
        return self.ref_cache.rows(inputs["row"].tolist(), mask.sum(1).tolist(), targets)

    def _record(self, sums: dict) -> None:
        """Accumulate token sums of the objective's diagnostics (``n`` = tokens) until the epoch ends."""
        for key, value in sums.items():
            self._diag_sums[key] = self._diag_sums.get(key, 0.0) + float(value)

    def pop_diagnostics(self) -> dict[str, float]:
        """Token means of the diagnostics since the last call (GIFT: mass on y*, share not one-hot), over the
        tokens of every process (every process calls this at the epoch's end: the sums are all-reduced)."""
        sums, self._diag_sums = self._diag_sums, {}
        if self.accelerator.num_processes > 1 and sums:  # the same keys on every process: one objective
            keys = sorted(sums)
            total = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=self.accelerator.device)
            sums = dict(zip(keys, self.accelerator.reduce(total, reduction="sum").tolist()))
        n = sums.pop("n", 0.0)
        return {k: v / n for k, v in sums.items()} if n else {}


def chunked_label_logprobs(hidden, weight, labels, chunk: int):
    """log softmax(hidden @ weight.T)[label] of each row, ``chunk`` rows at a time: the logits in the dtype the
    chunked head computes the policy's (under autocast, as the model's lm_head), their log-softmax in fp32."""
    from giftlab.objectives.heads.common import outside_autocast

    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    for s in range(0, hidden.shape[0], chunk):
        z = hidden[s:s + chunk] @ weight.T
        with outside_autocast(z):
            out[s:s + chunk] = z.float().log_softmax(-1).gather(-1, labels[s:s + chunk, None]).squeeze(-1)
    return out


@torch.no_grad()
def validation_cross_entropy(model, dataset, collator, batch_size: int = 64) -> float:
    """Token-mean −log p(y*) over the validation responses: comparable across objectives.

    Processes share the examples (process r takes every ``world``-th from the r-th; one short of batches runs its
    first again, uncounted, so sharded processes run as many forwards) and their sums are all-reduced, so no process
    runs the whole split. Where the [tokens, V] logits would exceed one chunk of the loss head (``auto``, as
    training decides), the cross-entropy comes from the final hidden states a chunk of tokens at a time: at 8,192
    tokens and Qwen's 152k vocabulary a batch of 2 would hold ~30 GB of logits and their fp32 copies.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rank, world = rank_and_world()
    mine = list(range(rank, len(dataset), world))
    batches = [mine[s:s + batch_size] for s in range(0, len(mine), batch_size)]
    largest = -(-len(dataset) // world)
    objective, vocab = get_objective("sft"), vocab_size(model)
    sums = torch.zeros(2, dtype=torch.float64)
    for b in range(-(-largest // batch_size)):
        rows = batches[b] if b < len(batches) else (batches or [[0]])[0]
        batch = {k: v.to(device) for k, v in collator([dataset[i] for i in rows]).items()}
        mask, targets = response_positions(batch["labels"])
        chunk = head_chunk_size("auto", int(mask.sum()), vocab)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if chunk is None:
            logits = model(**inputs).logits[:, :-1][mask]
            loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
        else:
            loss = call_with_head(model, lambda hidden, weight: chunked_loss(
                objective, hidden[:, :-1][mask], weight, targets, chunk_size=chunk)[0], **inputs)
        if b < len(batches):
            sums += torch.tensor([loss.item(), targets.numel()], dtype=torch.float64)
    if world > 1:
        sums = sums.to(device)
        torch.distributed.all_reduce(sums)
    model.train(was_training)
    total, count = sums.tolist()
    return total / max(count, 1)


class EpochEnd(TrainerCallback):
    """At each epoch end: validation CE, objective diagnostics, and an HF-format export of the weights.

    Records persist in ``work_dir/epochs.json`` so a resumed run keeps the earlier epochs' rows.
    """

    def __init__(self, trainer: ObjectiveTrainer, tokenizer, val_dataset, work_dir: Path, batch_size: int,
                 export_dtype: str | None = None):
        self.trainer, self.tokenizer, self.val = trainer, tokenizer, val_dataset
        self.work_dir, self.batch_size, self.export_dtype = work_dir, batch_size, export_dtype
        self.path = work_dir / "epochs.json"
        self.records = json.loads(self.path.read_text()) if self.path.exists() else []
        self._train_losses: list[float] = []
        self._t0 = time.time()

    PARTIAL = "epoch_partial-rank{rank}.json"

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._train_losses.append(float(logs["loss"]))

    def on_save(self, args, state, control, **kwargs):
        """The epoch so far (its logged losses, this process's diagnostic sums, and the Trainer's loss summed since
        its last log with that log's step) in a mid-epoch checkpoint (a preemption's, between two logged steps where
        the logging interval is above 1), before it is stamped complete: a run resumed there logs and records what
        an uninterrupted run does."""
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            rank = self.trainer.accelerator.process_index
            write_json_atomic(ckpt / self.PARTIAL.format(rank=rank),
                              {"train_losses": self._train_losses, "diag_sums": self.trainer._diag_sums,
                               "unlogged_loss": float(self.trainer._tr_loss.item()),
                               "last_logged_step": int(self.trainer._globalstep_last_logged)})
        self.trainer.accelerator.wait_for_everyone()  # every process's share written before the stamp (all wait)
        return control

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step > 0:  # resumed: the epoch so far, as the checkpoint holds it
            path = (Path(args.output_dir) / f"checkpoint-{state.global_step}"
                    / self.PARTIAL.format(rank=self.trainer.accelerator.process_index))
            if path.is_file():
                partial = json.loads(path.read_text())
                self._train_losses = [float(x) for x in partial["train_losses"]]
                self.trainer._diag_sums = {k: float(v) for k, v in partial["diag_sums"].items()}
                if "unlogged_loss" in partial:  # the Trainer set both afresh just before on_train_begin
                    self.trainer._tr_loss.fill_(partial["unlogged_loss"])
                    self.trainer._globalstep_last_logged = int(partial["last_logged_step"])
        return control

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        epoch = int(round(state.epoch))
        with phase("sft/train/validate"):
            val_ce = validation_cross_entropy(model, self.val, self.trainer.data_collator, self.batch_size)
        with phase("sft/train/export"):
            export_model(self.trainer, self.tokenizer, self.work_dir / "export" / f"epoch_{epoch}",
                         self.export_dtype)
        record = {"epoch": epoch, "step": state.global_step, "val_loss": val_ce,
                  "train_loss": (sum(self._train_losses) / len(self._train_losses)) if self._train_losses else None,
                  "seconds": round(time.time() - self._t0, 2), **self.trainer.pop_diagnostics()}
        self.records = [r for r in self.records if r["epoch"] != epoch] + [record]
        if state.is_world_process_zero:
            write_json_atomic(self.path, self.records)
        log.info("epoch %d: val_loss %.4f train_loss %s", epoch, val_ce, record["train_loss"])
        self._train_losses, self._t0 = [], time.time()
        return control


def training_arguments(settings: SFTSettings, work_dir: Path, steps_per_epoch: int,
                       run_name: str | None = None) -> TrainingArguments:
    """The Trainer's arguments. Trackers: ``settings.report_to``; TensorBoard's directory is set on its callback
    (:func:`giftlab.training.tracking.use_tensorboard`: transformers 5 has no ``logging_dir`` argument)."""
    use_cpu = not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=settings.trained_epochs,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.lr,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        weight_decay=settings.weight_decay,
        adam_beta1=settings.adam_betas[0],
        adam_beta2=settings.adam_betas[1],
        max_grad_norm=settings.max_grad_norm,
        bf16=settings.bf16 and not use_cpu,
        use_cpu=use_cpu,
        seed=settings.seed,
        data_seed=settings.seed,
        save_strategy="epoch",
        # one checkpoint kept (~93 GB at 7B under FSDP), pruned by CompleteMarker(keep=1) once the next is stamped:
        # the Trainer's save_total_limit deletes before the stamp, so it needed 2 to keep one complete
        save_total_limit=None,
        eval_strategy="no",
        logging_steps=logging_interval(settings.logging_steps, steps_per_epoch),
        report_to=list(settings.report_to),
        run_name=run_name,  # the run's name in W&B / MLflow
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,  # every parameter takes part in the loss: skip DDP's extra graph walk
        accelerator_config=accelerator_config(),  # under FSDP: synchronise every micro-batch, as verl
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def global_batch_size(args: TrainingArguments) -> int:
    """Examples per optimiser step: per-process batch x accumulation steps x processes."""
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)


class WholeStepSampler(torch.utils.data.Sampler):
    """A seeded shuffle of the training set, another each epoch (read from ``epoch_of``, else ``set_epoch``), cut to
    a whole number of optimiser steps of ``step_size`` examples: the rest of the shuffle (other examples each epoch)
    is not trained that epoch, as with the released trainer's ``DistributedSampler(drop_last=True)``. Every process
    draws the same order; accelerate deals its batches out. Fewer examples than one step: all are kept.

    ``epoch_of``: where given (the Trainer's, :func:`giftlab.training.checkpoints.trainer_epoch`), the epoch is read
    from it when an epoch starts instead of told through ``set_epoch``. Under several processes a dataloader resumed
    mid-epoch is accelerate's SkipBatchSampler > BatchSamplerShard > BatchSampler > this sampler, and
    ``DataLoaderShard.set_epoch`` (accelerate 1.15) looks two levels down only: the rest of a resumed epoch took
    epoch 0's shuffle."""

    def __init__(self, n_examples: int, step_size: int, seed: int, epoch_of=None):
        self.n, self.seed, self.epoch = n_examples, int(seed), 0
        self.epoch_of = epoch_of
        self.keep = n_examples - n_examples % step_size if n_examples >= step_size else n_examples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.keep

    def __iter__(self):
        if self.epoch_of is not None:
            self.epoch = int(self.epoch_of())
        generator = torch.Generator()
        generator.manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=generator)[:self.keep].tolist())


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of SFT epoch ``epoch``'s shuffle under training seed ``seed``: a 63-bit hash of both, so
    every (seed, epoch) has its own order (``seed + epoch`` would give seed 1's epoch 1 seed 2's epoch 0, and
    consecutive seeds the same shuffles one epoch apart)."""
    digest = hashlib.sha256(f"sft-order\x00{int(seed)}\x00{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def optimiser_steps_per_epoch(n_examples: int, batch_size: int, grad_accum: int, world_size: int = 1,
                              drop_last: bool = False) -> int:
    """An epoch's optimiser steps as the Trainer counts them: ⌈n / batch_size⌉ batches dealt out evenly to
    ``world_size`` processes (accelerate's even batches), ``grad_accum`` per step, the last one possibly short;
    with ``drop_last`` (:class:`WholeStepSampler`) only the whole steps."""
    step = batch_size * grad_accum * world_size
    if drop_last and n_examples >= step:
        return n_examples // step
    batches_per_process = math.ceil(math.ceil(n_examples / batch_size) / world_size)
    return max(1, math.ceil(batches_per_process / grad_accum))


def logging_interval(wanted: int, steps_per_epoch: int) -> int:
    """The largest interval ≤ ``wanted`` that divides an epoch: checkpoints (one per epoch) then fall on logging
    steps, so a run resumed after a kill logs the same mean losses as one never interrupted (the Trainer averages
    the loss since its last log, which a resume resets)."""
    wanted = max(1, min(wanted, steps_per_epoch))
    return next(k for k in range(wanted, 0, -1) if steps_per_epoch % k == 0)


def train_sft(*, base_path: str, tokenizer, load_model, train_rows, val_rows, solution_key: str,
              method: str, objective_params: dict[str, Any], settings: SFTSettings,
              out_dir: str | Path, work_dir: str | Path, job_config: dict[str, Any],
              callbacks: Sequence[TrainerCallback] = (), reference_cache: Sequence[str | Path] = (),
              train_files: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Train one SFT run; write ``out_dir/epoch_<k>/`` for every epoch; return metrics.

    Resumes from the newest complete checkpoint in ``work_dir`` (same job config only). With
    ``settings.reference == "cached"`` an objective that needs the base reads ``reference_cache`` (one file per
    training file, in their order; giftlab.training.reference) instead of running the frozen base every step;
    ``train_files``, the files ``train_rows`` were read from (scripts/sft.py), are checked against the split each
    cache was made from (rows given without their files: only each batch's rows and labels are checked).
    """
    set_seed(settings.seed)
    objective = get_objective(method, **objective_params)
    objective.probe()  # a new objective's missing default or reduced output: one line now, before any model loads
    if objective.needs_ref and settings.reference == "cached":
        try:
            objective.check_cached_reference()
        except ValueError as exc:
            raise ConfigError(f"config: sft.reference: cached with objective {method!r}: {exc}") from None
    loss_backend = choose_backend(settings.loss_backend, objective)
    work_dir = prepare_work_dir(work_dir, trajectory_config(job_config))
    check_exports(work_dir)
    with phase("sft/load"):
        model = fp32_master_weights(load_model(base_path))
        train_ds = SFTDataset(train_rows, tokenizer, solution_key, settings.max_length)
        val_ds = SFTDataset(val_rows, tokenizer, solution_key, settings.max_length)
        ref_model = old_model = ref_cache = None
        if objective.needs_ref and settings.reference == "cached":
            ref_cache = load_reference_cache(reference_cache, settings, solution_key, vocab_size(model), base_path,
                                             train_files, train_ds.row_digests())
        elif objective.needs_ref:
            with weights_in_every_process():  # loaded before the Trainer makes the process group; whole either way
                ref_model = load_model(base_path).eval().requires_grad_(False)
        if objective.needs_old:
            old_model = copy.deepcopy(model).eval().requires_grad_(False)
    for name, ds, rows in (("training", train_ds, train_rows), ("validation", val_ds, val_rows)):
        if ds.truncated or ds.dropped:
            log.warning("sft.max_length %d: %d of %d %s examples cut on the right (their response ends without EOS), "
                        "%d dropped (no response token left)", settings.max_length, ds.truncated, len(rows), name,
                        ds.dropped)
    # accelerate launch sets WORLD_SIZE: each process takes an equal share of the batches
    processes = int(os.environ.get("WORLD_SIZE", 1))
    steps_per_epoch = optimiser_steps_per_epoch(len(train_ds), settings.batch_size, settings.grad_accum, processes,
                                                settings.drop_last)
    # the global batch follows the launch (E.1's 128 = 2 per GPU x 8 steps x 8 GPUs): recorded, so a run on another
    # number of GPUs without a matching sft.grad_accum shows in its metrics
    global_batch = settings.batch_size * settings.grad_accum * processes
    log.info("SFT global batch %d = %d per process x %d accumulation steps x %d processes", global_batch,
             settings.batch_size, settings.grad_accum, processes)
    run_name = "/".join(str(job_config[k]) for k in ("backbone", "run") if job_config.get(k)) or None
    args = training_arguments(settings, work_dir, steps_per_epoch, run_name=run_name)
    trainer = ObjectiveTrainer(model=model, args=args, train_dataset=train_ds,
                               data_collator=PadCollator(tokenizer.pad_token_id),
                               objective=objective, ref_model=ref_model, ref_cache=ref_cache, old_model=old_model,
                               loss_head=settings.loss_head, loss_backend=loss_backend, drop_last=settings.drop_last,
                               schedule_steps=steps_per_epoch * settings.epochs if settings.stop_epoch else None)
    epoch_end = EpochEnd(trainer, tokenizer, val_ds, work_dir, settings.batch_size, settings.export_dtype)
    trainer.add_callback(epoch_end)
    if old_model is not None:  # before CompleteMarker: the snapshot it saves is in the checkpoint before the stamp
        trainer.add_callback(SnapshotRefresh(old_model, int(objective.hparams.get("snapshot_every", 8))))
    trainer.add_callback(CompleteMarker(keep=1))
    for callback in callbacks:
        trainer.add_callback(callback)
    trainer.add_callback(StepLog(work_dir / "steps.jsonl"))
    # last: its on_save runs after CompleteMarker's, then raises Preempted (SIGTERM / SIGUSR1; the job exits non-zero)
    preemption = PreemptionCheckpoint(trainer)
    trainer.add_callback(preemption)

    resume = last_complete_checkpoint(work_dir)
    if resume is not None:
        log.info("resuming from %s", resume)
    use_tensorboard(trainer, work_dir / "tensorboard", int(resume.name.split("-")[-1]) if resume else None)
    t0 = time.time()
    # policy forward + backward over every token of every epoch, and a forward of each frozen model beside it
    tokens = 0 if resume else settings.trained_epochs * sum(len(ex["input_ids"]) for ex in train_ds.examples)
    flops = matmul_flops(model, tokens, backward=True) + \
        sum(matmul_flops(m, tokens) for m in (ref_model, old_model) if m is not None)
    with phase("sft/train", tokens=tokens, flops=flops):  # includes validation and export, timed below
        try:
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        finally:  # also when train() raises: no stale handler outlives this run
            preemption.uninstall()
    seconds = time.time() - t0

    # a work dir resumed from a longer run of this trajectory holds later epochs too: this run's are the first ones
    trained = settings.trained_epochs
    epochs = sorted((r for r in epoch_end.records if r["epoch"] <= trained), key=lambda r: r["epoch"])
    missing = [e for e in range(1, trained + 1) if not (work_dir / "export" / f"epoch_{e}").is_dir()]
    if missing or len(epochs) != trained:
        raise RuntimeError(f"training ended without exports for epochs {missing}")
    if trainer.is_world_process_zero():
        with atomic_dir(out_dir) as tmp:
            for e in range(1, trained + 1):  # hard links: one copy of 10 x 15 GB on disk, not two
                shutil.copytree(work_dir / "export" / f"epoch_{e}", tmp / f"epoch_{e}", copy_function=_link_or_copy)
    return {"method": method, "objective": {"name": objective.name, **objective.hparams},
            "epochs": epochs, "train_examples": len(train_ds), "val_examples": len(val_ds),
            "processes": processes, "global_batch": global_batch,
            "train_truncated": train_ds.truncated, "train_dropped": train_ds.dropped,
            "val_truncated": val_ds.truncated, "val_dropped": val_ds.dropped,
            "steps": epochs[-1]["step"], "resumed_from": str(resume) if resume else None,
            "train_seconds_this_session": round(seconds, 2)}


def trajectory_config(job_config: Mapping[str, Any]) -> dict[str, Any]:
    """What a work dir's checkpoints are the training of: the job config less ``settings.stop_epoch``, where a run
    stops on the same trajectory. A run stopped at ``sft.rl_epoch`` and later asked for every epoch (it joined
    Figure 1) resumes at its last checkpoint; one stamped with the longer run's exports its first epochs (its steps CSV
    is cut there too, scripts/sft.py; its copied TensorBoard events keep the longer run's later steps). With the
    optimiser's grouping (:func:`~giftlab.training.weight_decay.with_optimizer_groups`)."""
    settings = job_config.get("settings")
    if not isinstance(settings, Mapping) or "stop_epoch" not in settings:
        return with_optimizer_groups(job_config)
    return with_optimizer_groups({**job_config, "settings": {k: v for k, v in settings.items() if k != "stop_epoch"}})


def check_exports(work_dir: Path) -> None:
    """Refuse a work dir holding a damaged epoch export, in one line: an epoch's export is made once, at its end,
    and the kept checkpoint (the last) cannot make it again; the published model links to it, so damage to either
    name is damage to both (``_link_or_copy``), and a forced rebuild would publish it again as it is."""
    from giftlab.cli import JobFailed
    from giftlab.models import CorruptCheckpoint, check_weights

    for export in sorted((work_dir / "export").glob("epoch_*")):
        try:
            check_weights(export)
        except CorruptCheckpoint as exc:
            raise JobFailed(f"{exc.file}: {exc.what}; this run's epoch exports cannot be made again from its "
                               f"kept checkpoint: delete {work_dir} to train the run again") from None


def _link_or_copy(src, dst):
    """A hard link of an export file (written once, never edited in place: both names stay what was exported), or a
    copy where ``work/`` and the outputs lie on different filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def load_reference_cache(paths: Sequence[str | Path], settings: SFTSettings, solution_key: str, vocab: int,
                         base_path: str | Path, train_files: Sequence[str | Path] = (),
                         row_digests: Sequence[bytes] | None = None):
    """The reference caches of a run's training files, concatenated, checked against this run's base and how it
    tokenises, and each against the training file it stands for (``train_files``, in the same order: the split's
    sha256) and against this run's tokenisation of that file's rows (``row_digests``: the training set's
    ``SFTDataset.row_digests()``); each batch's rows and labels are checked as they are read."""
    from giftlab.models import local_checkpoint
    from giftlab.training.reference import ReferenceCache, ReferenceMismatch, weights_fingerprint

    if not paths:
        raise ConfigError("sft.reference: cached, but no reference cache was given (--reference-cache)")
    if train_files and len(train_files) != len(paths):
        raise ConfigError(f"sft.reference: cached: {len(train_files)} training files but {len(paths)} reference "
                          f"cache(s) (--reference-cache: one per training file, in their order)")
    caches = [ReferenceCache.load(p) for p in paths]
    for one, split in zip(caches, train_files):
        one.check_split(split)
    cache = ReferenceCache.concat(caches)
    cache.check(max_length=settings.max_length, solution_key=solution_key, vocab_size=vocab,
                base=weights_fingerprint(local_checkpoint(base_path)))
    if row_digests is not None:
        if cache.n_rows != len(row_digests):
            raise ReferenceMismatch(f"reference cache(s) {', '.join(map(str, paths))}: {cache.n_rows} rows, the "
                                    f"training set {len(row_digests)}; rebuild them")
        first = 0
        for one in caches:
            one.check_tokens(row_digests, first)
            first += one.n_rows
    return cache


SNAPSHOT_FILE = "psft_snapshot.safetensors"  # PSFT's π_old in a checkpoint saved between two refreshes


class SnapshotRefresh(TrainerCallback):
    """PSFT's π_old: a lagged copy of the policy refreshed every ``every`` optimiser steps.

    Refreshing every step would make the ratio ≡ 1 and PSFT collapse to SFT. The snapshot computes as the policy
    does: in the dtype the policy's forward holds its parameters in (FSDP2's bf16 over fp32 master weights;
    :func:`giftlab.training.sharded.match_forward_dtype`, once the Trainer has prepared the policy) and under the
    policy's autocast (``ObjectiveTrainer.compute_loss``), so r = π_θ/π_old is exactly 1 right after a refresh.

    A checkpoint saved between two refreshes (an epoch's end: 78 steps is no multiple of 8; a preemption) holds the
    snapshot too (:data:`SNAPSHOT_FILE`, written by the main process before ``CompleteMarker`` stamps it), and a run
    resumed there takes it back: restarting the lag from the resumed policy trained up to ``every - 1`` steps
    against a newer π_old than the uninterrupted run. A checkpoint without one (written before it was saved) falls
    back to the resumed policy, with a warning.
    """

    def __init__(self, old_model, every: int):
        self.old_model, self.every = old_model, max(1, every)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        match_forward_dtype(self.old_model, model)
        if state.global_step > 0:
            between_refreshes = state.global_step % self.every != 0
            saved = Path(args.output_dir) / f"checkpoint-{state.global_step}" / SNAPSHOT_FILE
            if between_refreshes and saved.is_file():
                from safetensors.torch import load_model as load_safetensors

                load_safetensors(self.old_model, saved, device="cpu")  # copied into the snapshot's own dtype
                return control
            if between_refreshes:
                log.warning("%s: no PSFT snapshot in the checkpoint; π_old restarts from the resumed policy", saved)
            load_gathered(self.old_model, model)  # a refresh fell on this step: the snapshot is the policy
        return control

    def on_save(self, args, state, control, **kwargs):
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.global_step % self.every and state.is_world_process_zero and ckpt.is_dir():
            from safetensors.torch import save_model as save_safetensors

            tmp = ckpt / f".{SNAPSHOT_FILE}.tmp"
            save_safetensors(self.old_model, str(tmp))  # every process holds the same whole snapshot
            os.replace(tmp, ckpt / SNAPSHOT_FILE)
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:  # every process: a sharded policy is gathered collectively
            load_gathered(self.old_model, model)
        return control
