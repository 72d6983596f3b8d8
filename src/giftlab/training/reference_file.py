"""The reference cache's file: one safetensors file, written in place by a job that resumes where it was stopped.

Layout (readable by ``safetensors.safe_open`` and by :meth:`ReferenceCache.load`'s memory map): the 8-byte header
length, the header (compact JSON: ``__metadata__`` = {format, meta}, then the tensors of :data:`ORDER`, padded with
spaces to 8 bytes), the tensors' bytes in that order. The header depends only on the shapes and the metadata, so
(a) it is written before any log-prob is computed and the file filled in place, and (b) a cache's bytes do not
depend on the process that wrote it: safetensors' own ``save_file`` orders the metadata keys at random per process
(a Rust HashMap), so two builds of one cache differed in about half of the runs, and with them their sha256 and
DVC hash.

Resume (:class:`CacheWriter`): the ``reference_cache`` job fills the file in its work folder (never an output),
records every few minutes how many rows are on disk (``progress.json``, naming the sha256 of the header and the
batch size: another base, split, tokenisation, k or batch size starts over), and moves the file to its output after
the last row. A rerun after a kill or a SIGTERM continues from the recorded row with the same batches, so the file
is byte for byte the one an uninterrupted run writes. At paper scale a pass is ~25 min of one GPU and the file tens
of GB (reference.py).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from giftlab.provenance import training_code_version

log = logging.getLogger(__name__)

FORMAT = "giftlab.reference_cache/1"
# safetensors' own order (widest dtype first, then name), which its save_file wrote before this module did
ORDER = ("offsets", "label_logp", "top_logp", "labels", "top_ids")
DTYPES = {"offsets": "I64", "label_logp": "F32", "top_logp": "F32", "labels": "I32", "top_ids": "I32"}
NUMPY = {"I64": "<i8", "I32": "<i4", "F32": "<f4"}  # the file is little-endian
TORCH = {"I64": torch.int64, "I32": torch.int32, "F32": torch.float32}


def shapes(n_rows: int, n_tokens: int, k: int) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in a cache of ``n_rows`` rows, ``n_tokens`` response tokens and top-``k`` entries."""
    return {"offsets": (n_rows + 1,), "label_logp": (n_tokens,), "top_logp": (n_tokens, k),
            "labels": (n_tokens,), "top_ids": (n_tokens, k)}


def header_bytes(shape: Mapping[str, tuple[int, ...]], meta: Mapping[str, Any]) -> bytes:
    """The file's first bytes (length + JSON header): a function of the shapes and ``meta`` only."""
    entries, offset = {}, 0
    for name in ORDER:
        size = math.prod(shape[name]) * TORCH[DTYPES[name]].itemsize
        entries[name] = {"dtype": DTYPES[name], "shape": list(shape[name]), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps({"__metadata__": {"format": FORMAT, "meta": json.dumps(dict(meta), sort_keys=True)},
                       **entries}, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return len(text).to_bytes(8, "little") + text


def tensor_views(raw, data_start: int, entries: Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensors of a file mapped as ``raw`` (a numpy uint8 memmap), viewed in place (no copy): ``entries`` its
    parsed header, ``data_start`` where the tensors' bytes begin (8 + the header's length)."""
    views = {}
    for name in ORDER:
        info = entries[name]
        start, end = (data_start + offset for offset in info["data_offsets"])
        views[name] = torch.from_numpy(raw[start:end].view(NUMPY[info["dtype"]]).reshape(info["shape"]))
    return views


def save(tensors: Mapping[str, Tensor], meta: Mapping[str, Any], path: str | Path) -> Path:
    """Write a whole cache held in memory (atomically: a killed save leaves no file that looks complete)."""
    from giftlab.io import atomic_file

    header = header_bytes({name: tuple(tensors[name].shape) for name in ORDER}, meta)
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header)
        for name in ORDER:
            fh.write(tensors[name].to(TORCH[DTYPES[name]]).contiguous().numpy().data)
    return Path(path)


class CacheWriter:
    """A cache file filled in place in ``work``, its progress recorded so that a rerun resumes it.

    ``rows_done()`` is where to start (0 without a matching partial file), ``open()`` the tensors to fill,
    ``commit(rows)`` makes the first ``rows`` rows durable, ``finish(out)`` moves the file to its output."""

    def __init__(self, work: str | Path, shape: Mapping[str, tuple[int, ...]], meta: Mapping[str, Any],
                 batch_size: int | None = None):
        self.work = Path(work)
        self.file, self.progress = self.work / "reference.safetensors", self.work / "progress.json"
        self.header = header_bytes(shape, meta)
        self.entries = json.loads(self.header[8:])
        self.size = len(self.header) + max(self.entries[name]["data_offsets"][1] for name in ORDER)
        # the batching too (not in the header): rows of another batch size are other bytes; and the training code
        # (rows computed by other code are not resumed, as a trainer's checkpoints are not)
        self.key = hashlib.sha256(self.header + f"batch_size={batch_size}".encode()
                                  + f"code={training_code_version()}".encode()).hexdigest()
        self._raw = None

    def rows_done(self) -> int:
        """Rows already on disk from an earlier attempt of this same cache; 0 (and the reason logged) otherwise."""
        if not self.progress.exists():
            return 0
        try:
            progress = json.loads(self.progress.read_text())
            with open(self.file, "rb") as fh:
                same = (progress["key"] == self.key and os.fstat(fh.fileno()).st_size == self.size
                        and fh.read(len(self.header)) == self.header)
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        if not same:
            log.info("%s: left by another base, split or settings (or torn): starting over", self.file)
            return 0
        return int(progress["rows"])

    def open(self, resume: bool) -> dict[str, Tensor]:
        import numpy as np

        if not resume:
            self.work.mkdir(parents=True, exist_ok=True)
            self.progress.unlink(missing_ok=True)
            with open(self.file, "wb") as fh:  # sparse: the bytes are written as the rows are computed
                fh.write(self.header)
                fh.truncate(self.size)
        self._raw = np.memmap(self.file, dtype=np.uint8, mode="r+")
        return tensor_views(self._raw, len(self.header), self.entries)

    def commit(self, rows: int) -> None:
        """The first ``rows`` rows are on disk: flush the mapping, then record it (a kill between the two only
        makes the rerun compute some rows again)."""
        from giftlab.io import write_text_atomic

        self._raw.flush()
        write_text_atomic(self.progress, json.dumps({"key": self.key, "rows": rows}))

    def close(self) -> None:
        """Flush and unmap (the caller has dropped the tensors ``open`` gave)."""
        if self._raw is not None:
            self._raw.flush()
            self._raw = None

    def finish(self, out: str | Path) -> Path:
        """Move the complete file to ``out`` (a rename on one filesystem, else a copy that replaces ``out`` whole)."""
        from giftlab.io import atomic_file

        self.close()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self.file, out)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            with atomic_file(out) as tmp:
                shutil.copyfile(self.file, tmp)
            self.file.unlink()
        self.progress.unlink(missing_ok=True)
        try:
            self.work.rmdir()  # nothing of this cache is left in it
        except OSError:
            pass
        return out
