"""Worker process body for :class:`giftlab.rewards.pool.GradingPool`.

Light to import (the parent pickles ``worker_main`` by reference); the heavy dependencies are
imported by the worker itself, or inherited from the forkserver's preload of ``_preload``.
"""

from __future__ import annotations

import os
import signal

from .cascade import _exc_message, grade_answer

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent (the forkserver / the pool's process) dies.

    A thread-based watchdog would not help: a C-level bigint hang holds the GIL.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _limit_memory(max_memory_mb: int | None) -> None:
    if not max_memory_mb:
        return
    try:
        import resource

        limit = int(max_memory_mb) * 1024 * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except Exception:
        pass


def worker_main(conn, inner_timeout, max_memory_mb, percent_rule: bool = True) -> None:
    """Loop: receive ``(tag, answer, gold, omi_extracted, omi_done)``, send ``(tag, fields)``.

    ``None`` or EOF ends the loop. Everything runs in this process's main thread, so the
    signal-based inner limits (OMI steps, Math-Verify) are live.
    """
    # The parent owns the lifecycle: SLURM's scancel / preemption signals every process of the job, and the
    # trainer checkpoints on SIGTERM / SIGUSR1 (training.preemption), which still needs its rewards graded.
    # The worker dies with its parent (PDEATHSIG), so ignoring these never leaves it behind.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    _die_with_parent()
    _limit_memory(max_memory_mb)
    from . import _preload  # noqa: F401  (no-op when the forkserver preloaded it)
    import logging

    mv_logger = logging.getLogger("math_verify")
    mv_logger.addHandler(logging.NullHandler())
    mv_logger.propagate = False  # no per-item warning spam on stderr
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        tag, answer, gold, omi_extracted, omi_done = msg
        try:
            r = grade_answer(answer, gold, inner_timeout, omi_extracted=omi_extracted,
                             omi_done=omi_done, include_percentage=percent_rule)
            out = (r.correct, r.method, r.extracted, r.timed_out, r.error)
        except BaseException as e:  # MemoryError, a stray alarm exception, ...
            out = (False, None, None, False, "worker: " + _exc_message(e))
        try:
            conn.send((tag, out))
        except (EOFError, OSError):
            break
