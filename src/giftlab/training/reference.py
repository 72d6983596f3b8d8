"""Reference log-probs computed once: the frozen base over an SFT split, stored per response token.

GIFT, SFT + KD and ASFT read the base distribution r at every response token, at every step of every epoch; the
base is frozen, so r is the same each epoch. The ``reference_cache`` rule runs it once over a split and stores,
per response token in the split's row order (a safetensors file):

    label_logp [T]      log r(y*), exact
    top_ids    [T, k]   the k most likely tokens under r;   top_logp [T, k] their log r
    labels     [T]      y* (checked against each training batch: a cache of other data is refused)
    and in its metadata the base's weights fingerprint, the split file's sha256 and the sha256 of the split's
    tokenised rows (``tokens_sha256``: prompts and chat template included), all checked when a run loads it
    offsets    [R + 1]  row i's tokens are offsets[i] : offsets[i + 1] (rows with no response token have none)

Training then reads an approximate r~, exact on S = top-k ∪ {y*}, with the tail mass m = 1 - r(S) spread evenly
over the other V - |S| tokens. r~ and r agree on S and both put m on the rest, so TV(r, r~) <= m; GIFT's target
pi* = (1 - b) r + b e_y (b from the exact r(y*)) moves by at most TV(pi*, pi~*) = (1 - b) TV(r, r~) <= (1 - b) m.
With k >= V - 1 the cache is exact up to float32 rounding of the stored log-probs. SFT + KD and forward-KL ASFT
have gradient lambda (q - r~): it moves by at most 2 lambda m in L1. Reverse-KL ASFT weighs log r~ - log r of every
token by the policy, unbounded on the tail: refused (ObjectiveSpec.validate_cached_ref).

Storage: 8 + 8k bytes per response token (int32 ids, float32 log-probs): 520 bytes at k = 64, so 10^8 tokens take
52 GB. It replaces one frozen forward per step and epoch (at paper scale 9 of 10 over 10 epochs).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from giftlab.cli import ConfigError
from giftlab.data import example_digest, tokenize_sft_example, tokens_sha256
from giftlab.training import reference_file
from giftlab.training.reference_file import CacheWriter
from giftlab.training.batches import PadCollator, response_positions

TENSORS = ("offsets", "labels", "label_logp", "top_ids", "top_logp")


class ReferenceMismatch(ConfigError):
    """A cache made from other data, another tokenisation or another base than the run that reads it (one line)."""


def dense_logprobs(top_ids: Tensor, top_logp: Tensor, labels: Tensor, label_logp: Tensor, vocab: int) -> Tensor:
    """log r~ [n, V]: the stored log-probs on S = top-k ∪ {y*}, the tail mass spread evenly over the rest.

    Normalised (a valid ``ref_logits``: ``log_softmax(log r~) = log r~``); never -inf, so 0 · log r~ stays 0."""
    dtype = top_logp.dtype
    ids, y = top_ids.long(), labels.long()
    n_known = ids.shape[1] + (~(ids == y[:, None]).any(-1)).to(torch.long)
    tail = tail_mass(ids, top_logp, y, label_logp)
    n_rest = (vocab - n_known).clamp_min(1)
    floor = math.log(torch.finfo(dtype).tiny)
    fill = (tail.log() - n_rest.to(dtype).log()).clamp_min(floor)
    out = fill[:, None].expand(-1, vocab).clone()
    out.scatter_(1, ids, top_logp)
    out.scatter_(1, y[:, None], label_logp[:, None])
    return torch.log_softmax(out, -1)


def tail_mass(top_ids: Tensor, top_logp: Tensor, labels: Tensor, label_logp: Tensor) -> Tensor:
    """m = 1 - r(top-k ∪ {y*}) per token: the mass the cache spreads evenly (the bound on TV(r, r~))."""
    label_in_top = (top_ids.long() == labels.long()[:, None]).any(-1)
    known = torch.cat([top_logp, torch.where(label_in_top, -math.inf, label_logp)[:, None]], -1)
    return (-torch.expm1(torch.logsumexp(known, -1))).clamp_min(0)


class CachedRows:
    """The reference of one batch's response tokens, in the trainer's order, densified on demand.

    Stands in for ``ref_logits`` [N, V]: ``rows[s:e]`` is the dense log r~ of tokens s..e (the chunked loss heads
    slice it one chunk at a time, so [N, V] is never materialised), ``rows.dense()`` all of it."""

    def __init__(self, top_ids: Tensor, top_logp: Tensor, labels: Tensor, label_logp: Tensor, vocab: int):
        self.top_ids, self.top_logp, self.labels, self.label_logp = top_ids, top_logp, labels, label_logp
        self.vocab = vocab
        self.shape = (labels.shape[0], vocab)

    def __getitem__(self, index: slice) -> Tensor:
        return dense_logprobs(self.top_ids[index], self.top_logp[index], self.labels[index],
                              self.label_logp[index], self.vocab)

    def dense(self) -> Tensor:
        return self[:]

    def detach(self) -> "CachedRows":
        return self


@dataclass
class ReferenceCache:
    """The reference log-probs of one split (or of several, concatenated in the trainer's row order)."""

    offsets: Tensor
    labels: Tensor
    label_logp: Tensor
    top_ids: Tensor
    top_logp: Tensor
    meta: dict

    @property
    def n_tokens(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def rows(self, rows: Sequence[int], counts: Sequence[int], labels: Tensor) -> CachedRows:
        """The cached tokens of batch rows ``rows`` (indices into the split's rows) with ``counts`` response tokens
        each; ``labels`` [sum(counts)] are the batch's targets, checked against the cache."""
        source = self.meta.get("source", "the reference cache")
        spans = []
        for row, count in zip(rows, counts):
            if not 0 <= row < self.n_rows:
                raise ReferenceMismatch(f"{source}: row {row} is not in the cache ({self.n_rows} rows): "
                                        f"it was made from other data; rebuild it")
            start, end = int(self.offsets[row]), int(self.offsets[row + 1])
            if end - start != count:
                raise ReferenceMismatch(f"{source}: row {row} has {end - start} cached response tokens where the "
                                        f"batch has {count} (made from other data or another tokenisation); rebuild it")
            spans.append(torch.arange(start, end))
        index = torch.cat(spans) if spans else torch.zeros(0, dtype=torch.long)
        cached = self.labels[index].to(labels.device)
        if not torch.equal(cached.long(), labels.long()):
            bad = int((cached.long() != labels.long()).nonzero()[0, 0])
            raise ReferenceMismatch(f"{source}: token {bad} of the batch is {int(labels[bad])} where the cache has "
                                    f"{int(cached[bad])} (made from other data); rebuild it")
        device = labels.device
        return CachedRows(self.top_ids[index].to(device), self.top_logp[index].to(device), cached,
                          self.label_logp[index].to(device), int(self.meta["vocab_size"]))

    def check(self, **expected: Any) -> None:
        """Refuse (one line) a cache whose metadata differs from what the run reading it uses."""
        source = self.meta.get("source", "the reference cache")
        for key, value in expected.items():
            if self.meta.get(key) != value:
                raise ReferenceMismatch(f"{source}: made with {key} = {self.meta.get(key)!r}, this run uses "
                                        f"{value!r}; rebuild it (snakemake --force {source})")

    def check_tokens(self, digests: Sequence[bytes], first_row: int = 0) -> None:
        """Refuse (one line) a cache whose rows were tokenised otherwise than this run tokenises rows ``first_row``
        onwards (``digests``: :func:`giftlab.data.example_digest` of every row): another chat template or system
        prompt changes the log-probs of the same response tokens, which the per-batch label check cannot see."""
        source = self.meta.get("source", "the reference cache")
        made = self.meta.get("tokens_sha256")
        if made is None:
            raise ReferenceMismatch(f"{source}: records no tokens_sha256 (made by an older giftlab); rebuild it "
                                    f"(snakemake --force {source})")
        this = tokens_sha256(digests[first_row:first_row + self.n_rows])
        if made != this:
            raise ReferenceMismatch(f"{source}: made from another tokenisation of its rows (tokens sha256 "
                                    f"{made[:12]}, this run's {this[:12]}: another tokenizer, chat template or "
                                    f"sft.max_length); rebuild it (snakemake --force {source})")

    def check_split(self, split: str | Path) -> None:
        """Refuse (one line) a cache made from another split file than ``split``, the training file it stands for:
        its recorded ``split_sha256`` differs. Row counts and labels alone pass a split with other prompts and the
        same responses (``data.instruction`` changed), whose base log-probs differ."""
        from giftlab.provenance import file_sha256

        source = self.meta.get("source", "the reference cache")
        made, this = self.meta.get("split_sha256"), file_sha256(split)
        if made != this:
            raise ReferenceMismatch(f"{source}: made from other data than {split} (split sha256 "
                                    f"{str(made)[:12]}… where the file has {this[:12]}…: other rows or prompts); "
                                    f"rebuild it (snakemake --force {source})")

    # ----------------------------------------------------------------- files (giftlab.training.reference_file)
    def tensors(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in TENSORS}

    def save(self, path: str | Path) -> Path:
        return reference_file.save(self.tensors(), {k: v for k, v in self.meta.items() if k != "source"}, path)

    @classmethod
    def load(cls, path: str | Path) -> "ReferenceCache":
        """Memory-mapped, not read: a batch reads its rows' pages only, and the processes of a multi-GPU run share
        one copy in the page cache (at paper scale the file is tens of GB)."""
        import numpy as np

        from giftlab.models import CorruptCheckpoint, check_safetensors

        path = Path(path)
        try:
            n, header = check_safetensors(path)  # a truncated or torn file: one line naming it and its rebuild
        except CorruptCheckpoint as exc:
            raise ReferenceMismatch(str(exc)) from None
        meta = header.get("__metadata__") or {}
        if meta.get("format") != reference_file.FORMAT or not set(TENSORS) <= set(header):
            raise ReferenceMismatch(f"{path}: not a reference cache ({reference_file.FORMAT}); rebuild it "
                                    f"(snakemake --force {path})")
        raw = np.memmap(path, dtype=np.uint8, mode="c")  # copy-on-write: writable views, pages shared until written
        return cls(**reference_file.tensor_views(raw, 8 + n, header),
                   meta={**json.loads(meta["meta"]), "source": str(path)})

    @classmethod
    def concat(cls, caches: Sequence["ReferenceCache"]) -> "ReferenceCache":
        """Several splits' caches in the order the trainer concatenates their rows (Direct SFT: sft, then rl)."""
        if len(caches) == 1:
            return caches[0]
        shift = torch.tensor([0] + [c.n_tokens for c in caches[:-1]]).cumsum(0)
        offsets = torch.cat([caches[0].offsets[:1]] + [c.offsets[1:] + s for c, s in zip(caches, shift)])
        joined = {name: torch.cat([getattr(c, name) for c in caches]) for name in TENSORS[1:]}
        meta = {**caches[0].meta, "source": " + ".join(c.meta.get("source", "?") for c in caches)}
        return cls(offsets=offsets, **joined, meta=meta)


def weights_fingerprint(folder: str | Path, blocks: int = 64, block_bytes: int = 1 << 16) -> str:
    """A content fingerprint of a checkpoint's weights that stays cheap at 15 GB: per ``*.safetensors`` file its
    name, size, header and ``blocks`` evenly spaced blocks (the whole file when it is small). Two bases of one
    architecture (same header, other weights) differ in it."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(Path(folder).glob("*.safetensors")):
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with open(file, "rb") as fh:
            if size <= blocks * block_bytes:
                digest.update(fh.read())
                continue
            for i in range(blocks):
                fh.seek(i * (size - block_bytes) // (blocks - 1))
                digest.update(fh.read(block_bytes))
    return digest.hexdigest()[:16]


def _count_rows(tokenizer, rows: Sequence[Mapping[str, str]], solution_key: str, max_length: int):
    """The first pass (tokenising only): each row's number of response tokens (the positions response_positions
    keeps: a response label after the first token) and its example digest."""
    counts, digests = [], []
    for row in rows:
        example = tokenize_sft_example(tokenizer, row["question"], row[solution_key], max_length)
        counts.append(sum(label != -100 for label in example["labels"][1:]))
        digests.append(example_digest(example))
    counts = torch.tensor(counts, dtype=torch.long)
    return torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]), digests


def _cache_meta(model, top_k: int, max_length: int, solution_key: str, digests, meta) -> dict:
    vocab = int(model.get_output_embeddings().weight.shape[0])
    return {**(meta or {}), "vocab_size": vocab, "top_k": min(int(top_k), vocab), "max_length": max_length,
            "solution_key": solution_key, "tokens_sha256": tokens_sha256(digests)}


@torch.no_grad()
def _fill(model, tokenizer, rows, out: Mapping[str, Tensor], *, solution_key: str, max_length: int, batch_size: int,
          tokens_per_chunk: int, first_row: int = 0, after_batch=None) -> None:
    """Run the frozen ``model`` over rows ``first_row``.. in batches of ``batch_size`` (boundaries counted from row
    0, so a resumed pass runs the batches an uninterrupted one runs) and write each token's log-probs into ``out``
    (whose ``offsets`` are already set); ``after_batch(end)`` after each batch."""
    model.eval()
    device = next(model.parameters()).device
    k = int(out["top_ids"].shape[1])
    offsets = out["offsets"]
    collate = PadCollator(tokenizer.pad_token_id)
    for start in range(first_row, len(rows), batch_size):
        end = min(start + batch_size, len(rows))
        examples = [tokenize_sft_example(tokenizer, r["question"], r[solution_key], max_length)
                    for r in rows[start:end]]
        batch = {key: value.to(device) for key, value in collate(examples).items()}
        mask, targets = response_positions(batch["labels"])
        if not torch.equal(mask.sum(1).cpu(), offsets[start + 1:end + 1] - offsets[start:end]):
            raise RuntimeError(f"rows {start}-{end - 1}: tokenisation is not deterministic (response token counts "
                               f"differ between two passes)")
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       use_cache=False).logits[:, :-1][mask]
        first = int(offsets[start])
        out["labels"][first:int(offsets[end])] = targets.to(torch.int32).cpu()
        # log_softmax, top-k and y*'s log-prob per token, some tokens at a time: the whole batch's fp32 copies were
        # 4x its bf16 logits at once (~20 GB at paper scale's 2 x 8,192 tokens x 152k vocabulary)
        for t in range(0, len(targets), tokens_per_chunk):
            logp = torch.log_softmax(logits[t:t + tokens_per_chunk].float(), -1)
            values, ids = logp.topk(k, -1)
            span = slice(first + t, first + t + len(logp))
            out["label_logp"][span] = logp.gather(-1, targets[t:t + tokens_per_chunk, None]).squeeze(-1).cpu()
            out["top_ids"][span] = ids.to(torch.int32).cpu()
            out["top_logp"][span] = values.cpu()
        del logits
        if after_batch is not None:
            after_batch(end)


def build_reference_cache(model, tokenizer, rows: Sequence[Mapping[str, str]], *, solution_key: str,
                          max_length: int, top_k: int, batch_size: int = 32, tokens_per_chunk: int = 2048,
                          meta: Mapping[str, Any] | None = None) -> ReferenceCache:
    """Run the frozen ``model`` over ``rows`` (tokenised as SFT tokenises them) and keep the log-probs above, in
    memory (the ``reference_cache`` job writes the file in place instead: :func:`write_reference_cache`).

    Host memory holds the cache once: a first pass counts each row's response tokens (tokenising only), the tensors
    are allocated at their final size and each batch's tokens are written in place."""
    offsets, digests = _count_rows(tokenizer, rows, solution_key, max_length)
    meta = _cache_meta(model, top_k, max_length, solution_key, digests, meta)
    shape = reference_file.shapes(len(rows), int(offsets[-1]), meta["top_k"])
    out = {name: torch.empty(shape[name], dtype=reference_file.TORCH[reference_file.DTYPES[name]])
           for name in TENSORS}
    out["offsets"].copy_(offsets)
    _fill(model, tokenizer, rows, out, solution_key=solution_key, max_length=max_length, batch_size=batch_size,
          tokens_per_chunk=tokens_per_chunk)
    return ReferenceCache(**out, meta=meta)


def write_reference_cache(model, tokenizer, rows: Sequence[Mapping[str, str]], *, work: str | Path,
                          solution_key: str, max_length: int, top_k: int, batch_size: int = 32,
                          tokens_per_chunk: int = 2048, meta: Mapping[str, Any] | None = None,
                          commit_every_s: float = 120.0,
                          stop: Callable[[], bool] = lambda: False) -> tuple[CacheWriter, int]:
    """:func:`build_reference_cache` written to a file as it is computed, resumable: the file is filled in ``work``
    (giftlab.training.reference_file.CacheWriter) and the rows on disk recorded every ``commit_every_s`` seconds and
    at the end; a rerun continues from the last record. When ``stop()`` turns true (SIGTERM) the rows so far are
    recorded and :class:`~giftlab.training.preemption.Preempted` raised. Host memory holds no copy of the cache (the
    file is a memory map). Returns the writer, whose ``file`` is complete (``finish(out)`` moves it to its output),
    and the row this pass resumed from (0: a fresh pass)."""
    from giftlab.training.preemption import Preempted

    offsets, digests = _count_rows(tokenizer, rows, solution_key, max_length)
    meta = _cache_meta(model, top_k, max_length, solution_key, digests, meta)
    writer = CacheWriter(work, reference_file.shapes(len(rows), int(offsets[-1]), meta["top_k"]), meta,
                         batch_size=batch_size)
    resumed = writer.rows_done()
    tensors = writer.open(resume=resumed > 0)
    tensors["offsets"].copy_(offsets)
    last = time.monotonic()

    def after_batch(end: int) -> None:
        nonlocal last
        stopping = stop()  # looked at once: a signal between two looks raised with the rows unrecorded
        if stopping or end == len(rows) or time.monotonic() - last >= commit_every_s:
            writer.commit(end)
            last = time.monotonic()
        if stopping and end < len(rows):
            raise Preempted(end, writer.file, unit="row")

    _fill(model, tokenizer, rows, tensors, solution_key=solution_key, max_length=max_length, batch_size=batch_size,
          tokens_per_chunk=tokens_per_chunk, first_row=resumed, after_batch=after_batch)
    del tensors
    writer.close()
    return writer, resumed


def tail_mass_summary(cache: ReferenceCache, entries: int = 1 << 22) -> tuple[float, float]:
    """(mean, max) of :func:`tail_mass` over every cached token, ``entries`` top-k entries at a time (over the whole
    cache at once it would widen top_ids to int64 and copy top_logp: more host memory than the cache itself)."""
    chunk = max(1, entries // max(1, int(cache.top_ids.shape[-1])))
    total, peak = 0.0, 0.0
    for s in range(0, cache.n_tokens, chunk):
        e = s + chunk
        tail = tail_mass(cache.top_ids[s:e], cache.top_logp[s:e], cache.labels[s:e], cache.label_logp[s:e])
        total += float(tail.double().sum())
        peak = max(peak, float(tail.max()))
    return (total / cache.n_tokens if cache.n_tokens else 0.0), peak
