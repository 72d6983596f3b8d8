"""Causal-LM pretraining of a tiny base on packed blocks, with the transformers ``Trainer``.

Step-based and deterministic: ``max_steps`` optimizer steps of ``batch_size`` blocks of
``block_size`` tokens, cosine schedule with a floor (``cosine_with_min_lr``). Resumable:

* checkpoints go to ``work_dir/checkpoint-<step>`` and count only once stamped complete
  (``giftlab.training.checkpoints``); the run resumes from the newest complete one;
* the work dir is fingerprinted with a hash of everything that shapes the run (model config,
  corpus, tokenizer vocab, trainer arguments); on a mismatch it is wiped.

The final model and tokenizer are written with ``save_pretrained`` into a temporary sibling of
``out_dir`` that replaces ``out_dir`` at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

from giftlab.profiling import matmul_flops, phase
from giftlab.training.checkpoints import (MARKER, CompleteMarker, last_complete_checkpoint, prepare_work_dir,
                                          train_or_finish)

log = logging.getLogger(__name__)



class PackedBlocks:
    """Documents encoded as ``<bos> doc <eos>``, concatenated and cut into equal blocks.

    Documents are shuffled (seeded) before packing; a trailing partial block is dropped.
    """

    def __init__(self, tokenizer, documents: Sequence[str], block_size: int, seed: int):
        import random

        import torch

        order = list(range(len(documents)))
        random.Random(seed).shuffle(order)
        eos = tokenizer.eos_token_id
        enc = tokenizer([documents[i] for i in order], add_special_tokens=True)["input_ids"]
        flat = [t for ids in enc for t in (*ids, eos)]
        n = len(flat) // block_size
        if n == 0:
            raise ValueError(f"corpus too small: {len(flat)} tokens < block_size {block_size}")
        self.blocks = torch.tensor(flat[: n * block_size], dtype=torch.long).view(n, block_size)
        self.n_tokens = len(flat)

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = self.blocks[i]
        return {"input_ids": x, "labels": x}


def run_signature(model, tokenizer, documents: Sequence[str], args: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(model.config.to_diff_dict(), sort_keys=True, default=str).encode())
    h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    h.update(json.dumps(args, sort_keys=True, default=str).encode())
    for d in documents:
        h.update(d.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def pretrain(model, tokenizer, documents: Sequence[str], out_dir, work_dir, max_steps: int,
             batch_size: int = 32, block_size: int = 128, lr: float = 3e-3,
             warmup_ratio: float = 0.03, min_lr_ratio: float = 0.1, weight_decay: float = 0.01,
             seed: int = 0, log_every: int = 50, save_steps: int | None = None,
             adam_betas: Sequence[float] = (0.9, 0.95), max_grad_norm: float = 1.0,
             callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Pretrain ``model`` on ``documents`` for ``max_steps``; save to ``out_dir``; return metrics.

    ``save_steps`` defaults to about a fifth of the run, rounded up to a multiple of ``log_every``. ``callbacks`` are extra
    ``TrainerCallback``s (tests use one to simulate an interruption).
    Returns ``{final_loss, loss_curve: [[step, loss], ...], steps, tokens_seen, corpus_tokens,
    epochs, seconds, resumed_from_step, n_params}``.
    """
    import torch
    from transformers import Trainer, TrainingArguments, default_data_collator, set_seed

    from giftlab.io import atomic_dir
    from giftlab.models import n_params
    from giftlab.tinyworld.tokenizer import save_tokenizer

    if max_steps < 1:
        raise ValueError("pretrain.max_steps: must be >= 1")
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    # about a fifth of the run, on a logging step: a run resumed there logs the same mean losses as one never
    # interrupted (the Trainer averages the loss since its last log, which a resume resets)
    save_steps = save_steps or math.ceil(max(1, math.ceil(max_steps / 5)) / log_every) * log_every
    hparams = dict(max_steps=max_steps, batch_size=batch_size, block_size=block_size, lr=lr,
                   warmup_ratio=warmup_ratio, min_lr_ratio=min_lr_ratio, weight_decay=weight_decay,
                   seed=seed, save_steps=save_steps, adam_betas=list(adam_betas),
                   max_grad_norm=max_grad_norm)
    signature = run_signature(model, tokenizer, documents, hparams)
    prepare_work_dir(work_dir, {"signature": signature})
    resume = last_complete_checkpoint(work_dir)

    set_seed(seed)
    data = PackedBlocks(tokenizer, documents, block_size, seed)
    args = TrainingArguments(
        output_dir=str(work_dir), max_steps=max_steps,
        per_device_train_batch_size=batch_size, gradient_accumulation_steps=1,
        learning_rate=lr, lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": min_lr_ratio}, warmup_steps=math.ceil(warmup_ratio * max_steps),
        weight_decay=weight_decay, adam_beta1=adam_betas[0], adam_beta2=adam_betas[1],
        max_grad_norm=max_grad_norm, logging_steps=log_every, logging_first_step=True,
        save_strategy="steps", save_steps=save_steps, save_total_limit=2,
        save_only_model=False, seed=seed, data_seed=seed, use_cpu=True, bf16=False, fp16=False,
        report_to="none", dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      data_collator=default_data_collator,
                      callbacks=[CompleteMarker(), *callbacks])
    start_step = 0
    if resume is not None:
        start_step = int((resume / MARKER).read_text())
        log.info("resuming from %s (step %d)", resume, start_step)
    t0 = time.time()
    tokens = (max_steps - start_step) * batch_size * block_size  # packed blocks: no padding
    with phase("pretrain/train", tokens=tokens, flops=matmul_flops(model, tokens, backward=True)):
        train_or_finish(trainer, resume)
    seconds = time.time() - t0

    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    tail = [l for s, l in losses if s > max_steps - max(log_every, max_steps // 10)] or \
           [l for _, l in losses[-1:]]
    with phase("pretrain/export"), atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        save_tokenizer(tokenizer, tmp)
    steps = trainer.state.global_step
    return {
        "final_loss": float(sum(tail) / len(tail)) if tail else float("nan"),
        "loss_curve": [[int(s), round(float(l), 5)] for s, l in losses],
        "steps": steps,
        "tokens_seen": steps * batch_size * block_size,
        "corpus_tokens": data.n_tokens,
        "epochs": steps * batch_size / len(data),
        "seconds": round(seconds, 2),
        "resumed_from_step": start_step,
        "n_params": n_params(model),
        "threads": torch.get_num_threads(),
    }
