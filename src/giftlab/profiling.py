"""Where a job's time goes: phases timed inside a job, one JSON line each in the job's log.

``with phase("generate", flops=...)`` prints ``giftlab-phase {"phase": "generate", "seconds": 1.2, "flops": ...}``
to stderr, which every rule sends to its ``log:``. ``benchmarks/profile_run.py`` reads these lines beside Snakemake's
``benchmark:`` files (each job's wall time) and sets each phase's time against its floor: its FLOPs at the
machine's measured matmul rate. FLOPs count the matmuls of the linear layers only (2 per weight per token for a
forward, 6 with the backward; attention scores and the embedding lookup excluded), so a floor is a lower bound.

Phases are logged, never written into result files: results stay byte-identical from run to run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator

PREFIX = "giftlab-phase "


def linear_weights(model) -> int:
    """Weights of the model's linear layers (the LM head counted once even when tied to the embedding)."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def matmul_flops(model, tokens: int, backward: bool = False) -> int:
    """Linear-layer FLOPs of ``tokens`` tokens through ``model``: 2·W per token forward, 6·W with the backward."""
    return (6 if backward else 2) * linear_weights(model) * int(tokens)


def emit(name: str, seconds: float, **fields) -> None:
    """One phase line on stderr (the job's log), from the job's main process only. The processes of a multi-GPU job
    (``accelerate launch`` / torchrun set ``RANK``) share one log and run their phases in step, and the training
    phases' tokens and FLOPs are the whole job's (the Trainer's ``num_input_tokens_seen`` is gathered): a line from
    each process counted the job's seconds, tokens and FLOPs once per process in benchmarks/profile_run.py."""
    if int(os.environ.get("RANK", 0) or 0) != 0:
        return
    record = {"phase": name, "seconds": round(float(seconds), 4), **fields}
    print(PREFIX + json.dumps(record), file=sys.stderr, flush=True)


@contextmanager
def phase(name: str, **fields) -> Iterator[dict]:
    """Time the block; fields set on the yielded dict while inside (e.g. ``flops``) go into its line.

    A block that raises logs nothing: a failed phase has no meaningful time.
    """
    record = dict(fields)
    start = time.perf_counter()
    yield record
    emit(name, time.perf_counter() - start, **record)


@contextmanager
def trl_phases(prefix: str) -> Iterator[dict[str, float]]:
    """Sum the timings TRL takes with its own ``profiling_context`` (generation, rewards, log-probs, loss).

    TRL times these blocks but reports them only to wandb / mlflow / trackio; this wraps its
    ``ProfilingContext._log_metrics`` (the one place every timing passes) for the duration of the block and logs
    one phase line per name at the end, as ``<prefix>/<name>``. Nested blocks overlap (``_prepare_inputs``
    contains the generation and the rewards).
    """
    from trl.extras.profiling import ProfilingContext

    totals: dict[str, float] = {}
    original = ProfilingContext._log_metrics

    def record(self, duration: float) -> None:
        name = self.name.split(".", 1)[-1]  # "GRPOTrainer.transformers.generate" -> "transformers.generate"
        totals[name] = totals.get(name, 0.0) + duration
        original(self, duration)

    ProfilingContext._log_metrics = record
    try:
        yield totals
    finally:
        ProfilingContext._log_metrics = original
    for name, seconds in sorted(totals.items()):
        emit(f"{prefix}/{name}", seconds)


def read_phases(text: str) -> list[dict]:
    """The phase records in a job log's text (lines that do not parse are skipped: a log may be torn)."""
    records = []
    for line in text.splitlines():
        at = line.find(PREFIX)
        if at < 0:
            continue
        try:
            records.append(json.loads(line[at + len(PREFIX):]))
        except json.JSONDecodeError:
            continue
    return records
