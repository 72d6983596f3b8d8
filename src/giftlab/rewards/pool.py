"""A bounded pool of killable grading worker processes.

Design (throughput + hard bounds):

* persistent workers, started with the ``forkserver`` context (``spawn`` where unavailable) so a
  parent holding torch/CUDA threads is never forked; the forkserver preloads sympy and
  math-verify, so a replacement worker is ready in milliseconds;
* one duplex pipe per worker with up to ``prefetch`` (2) small items queued in it, so a worker
  never idles while the parent is descheduled; the parent multiplexes the pipes with
  ``multiprocessing.connection.wait`` and enforces a per-item wall-clock deadline (the head
  item's clock starts when the previous result arrives): on overrun the worker is SIGKILLed and
  replaced, the item scores 0 with ``timed_out=True`` and the items queued behind it are
  re-dispatched;
* a parent-side fast path that needs no worker: the answer part is selected and truncated in the
  parent; when the last ``\\boxed{}`` is short, the OMI string/numeric stage (no sympy, pure
  string code) runs there, and a match is final (the cascade returns 1 on an OMI match). Every
  other item goes to a worker, which runs the rest of the cascade;
* a worker that dies (crash, OOM, external kill) is replaced; its item scores 0 with an error.

Like any ``spawn``/``forkserver`` user, scripts that create a pool at import time need an
``if __name__ == "__main__":`` guard, and every worker runs the parent's main module again (as
``__mp_main__``) before it grades: a script that imports torch at module level gives each worker
torch's import time and memory (scripts/ import it inside ``main()``; tests/test_architecture.py).
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import threading
import time
from collections import deque
from multiprocessing.connection import wait as _mp_wait

from .cascade import DEFAULT_INNER_TIMEOUT, GradeResult, _clip, _exc_message
from .extract import DEFAULT_MAX_CHARS, answer_part, last_boxed
from .normalize import quick_math_equal

__all__ = ["GradingPool", "default_pool", "DEFAULT_TIMEOUT"]

#: Wall-clock bound per grading (paper App. E.3: 10 s).
DEFAULT_TIMEOUT = 10.0
#: Boxed answers longer than this skip the parent fast path (keeps the parent's work tiny).
FAST_PATH_MAX_CHARS = 256
#: Payloads longer than this are only sent to an idle worker (never queued behind a busy one).
_PREFETCH_MAX_CHARS = 16_384
_PRELOAD = "giftlab.rewards._preload"


def _fast_path(answer: str, gold: str, percent_rule: bool = True):
    """``(GradeResult | None, extracted, omi_done)`` -- pure string work, bounded input sizes."""
    extracted = last_boxed(answer)
    if extracted is None:  # OMI cannot match without a box: only Math-Verify is left
        return None, None, True
    if len(extracted) > FAST_PATH_MAX_CHARS or len(gold) > FAST_PATH_MAX_CHARS:
        return None, extracted, False
    verdict = quick_math_equal(extracted, gold, include_percentage=percent_rule)
    if verdict is True:
        return GradeResult(True, "omi", _clip(extracted)), extracted, True
    # False: OMI is definitively wrong (numeric mismatch); the worker only runs Math-Verify.
    return None, extracted, verdict is False


class _Worker:
    __slots__ = ("proc", "conn", "ready", "started", "items", "deadline", "pid")

    def __init__(self, proc, conn):
        self.proc = proc
        self.conn = conn
        self.pid = proc.pid
        self.ready = False
        self.started = time.monotonic()
        self.items: deque[int] = deque()  # in flight, in order; the head is being graded
        self.deadline = None  # wall-clock deadline of the head item


class GradingPool:
    """Grade many (response, gold) pairs with the GIFT cascade, each bounded by a wall clock.

    Args:
        workers: number of worker processes.
        timeout: wall-clock seconds per grading (measured from dispatch to a ready worker).
        max_chars: answer-part truncation (characters kept from the END), see ``answer_part``.
        inner_timeout: per-step signal limits inside a worker (OMI sympy steps, Math-Verify
            parse/compare); default ``min(3, timeout/3)``, at least 1 s for Math-Verify.
        fast_path: grade exact string/numeric OMI matches in the parent without a worker.
        start_method: ``"forkserver"`` (default where available) or ``"spawn"``.
        max_memory_mb: RLIMIT_AS per worker (``None`` = unlimited); a blow-up is a MemoryError,
            i.e. an error result, instead of swapping the machine.
        startup_timeout: seconds a new worker may take to import and report ready.
        prefetch: items queued per worker (1 = strictly one at a time).
        percent_rule: OMI's percent rule (a number also matches gold/100 and gold*100, ``0.5`` ==
            ``50``), on as in GIFT; config ``eval.percent_rule`` / ``grpo.percent_rule``.

    ``grade_many`` preserves order, never raises for a bad item (``None``/non-string responses,
    empty golds, hostile inputs), and is serialised by a lock (one batch at a time).
    ``stats`` counts ``graded``, ``timeouts``, ``errors`` (plus ``correct``, ``fast_path``,
    ``restarts``).
    """

    def __init__(self, workers: int = 2, timeout: float = DEFAULT_TIMEOUT,
                 max_chars: int | None = DEFAULT_MAX_CHARS, inner_timeout: float | None = None,
                 fast_path: bool = True, start_method: str | None = None,
                 max_memory_mb: int | None = 4096, startup_timeout: float = 120.0,
                 prefetch: int = 2, percent_rule: bool = True):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.n_workers = int(workers)
        self.timeout = float(timeout)
        self.max_chars = max_chars
        self.inner_timeout = (min(DEFAULT_INNER_TIMEOUT, self.timeout / 3.0)
                              if inner_timeout is None else inner_timeout)
        self.fast_path = fast_path
        self.max_memory_mb = max_memory_mb
        self.startup_timeout = float(startup_timeout)
        self.prefetch = max(1, int(prefetch))
        self.percent_rule = bool(percent_rule)
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            _ensure_preload(self._ctx)
        self._lock = threading.RLock()
        self._stats = dict(graded=0, timeouts=0, errors=0, correct=0, fast_path=0, restarts=0)
        self._closed = False
        self._owner_pid = os.getpid()
        self._batch = 0  # tags messages so a result can never land in the wrong batch
        self._workers: list[_Worker] = [self._spawn() for _ in range(self.n_workers)]

    # ---------------------------------------------------------------- workers
    def _spawn(self) -> _Worker:
        from ._worker import worker_main

        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=worker_main,
                                 args=(child_conn, self.inner_timeout, self.max_memory_mb,
                                       self.percent_rule),
                                 name="giftlab-grader", daemon=True)
        proc.start()
        child_conn.close()
        return _Worker(proc, parent_conn)

    @staticmethod
    def _kill(w: _Worker) -> None:
        try:
            w.proc.kill()
        except Exception:
            pass
        try:
            w.proc.join(timeout=5)
        except Exception:
            pass
        try:
            w.conn.close()
        except Exception:
            pass
        try:
            w.proc.close()
        except Exception:
            pass

    def _replace(self, i: int) -> None:
        self._kill(self._workers[i])
        self._workers[i] = self._spawn()
        self._stats["restarts"] += 1

    def _requeue(self, i: int, queue: deque) -> None:
        """Replace worker ``i``; items still queued in its pipe go back to the queue front."""
        pending = self._workers[i].items
        queue.extendleft(reversed(pending))
        pending.clear()
        self._replace(i)

    def worker_pids(self) -> list[int]:
        """PIDs of the current workers (for monitoring and tests)."""
        return [w.pid for w in self._workers]

    def busy_worker_pids(self) -> list[int]:
        """PIDs of workers that currently hold an item."""
        return [w.pid for w in self._workers if w.items]

    # ---------------------------------------------------------------- grading
    @property
    def stats(self) -> dict:
        return dict(self._stats)

    def grade(self, response: str, gold: str) -> GradeResult:
        return self.grade_many([response], [gold])[0]

    def _record(self, results, idx, r: GradeResult) -> None:
        results[idx] = r
        self._stats["graded"] += 1
        self._stats["timeouts"] += int(bool(r.timed_out))
        self._stats["errors"] += int(r.error is not None)
        self._stats["correct"] += int(bool(r.correct))

    def grade_many(self, responses, golds) -> list[GradeResult]:
        responses = list(responses)
        golds = list(golds)
        if len(responses) != len(golds):
            raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
        with self._lock:
            if self._closed:
                raise RuntimeError("GradingPool is closed")
            if os.getpid() != self._owner_pid:
                raise RuntimeError("GradingPool used from a forked child; create a new pool there")
            self._batch += 1
            try:
                return self._grade_many(responses, golds)
            except BaseException:
                # interrupted (KeyboardInterrupt, startup failure): leave no stale items behind
                for k, w in enumerate(self._workers):
                    if w.items:
                        w.items.clear()
                        self._replace(k)
                raise

    def _prepare(self, response, gold):
        """``(result | None, payload)``: a final result, or what to send to a worker."""
        if gold is None or (isinstance(gold, str) and not gold.strip()):
            return GradeResult(False, None, None, error="empty gold answer"), None
        gold = gold if isinstance(gold, str) else str(gold)
        answer = answer_part(response, self.max_chars)
        if self.fast_path:
            r, extracted, omi_done = _fast_path(answer, gold, self.percent_rule)
            if r is not None:
                self._stats["fast_path"] += 1
                return r, None
            if not answer.strip():
                return GradeResult(False, None, None), None
            return None, (answer, gold, extracted, omi_done)
        return None, (answer, gold, None, False)

    def _grade_many(self, responses, golds) -> list[GradeResult]:
        n = len(responses)
        results: list[GradeResult | None] = [None] * n
        payloads: dict[int, tuple] = {}
        queue: deque[int] = deque()
        for i in range(n):
            try:
                r, payload = self._prepare(responses[i], golds[i])
            except Exception as e:
                r, payload = GradeResult(False, None, None, error="prepare: " + _exc_message(e)), None
            if r is not None:
                self._record(results, i, r)
            else:
                payloads[i] = payload
                queue.append(i)

        startup_failures = 0
        while queue or any(w.items for w in self._workers):
            # dispatch: fill idle workers first, then prefetch into busy ones
            for depth in range(self.prefetch):
                for k, w in enumerate(self._workers):
                    if not queue:
                        break
                    if not w.ready or len(w.items) != depth:
                        continue
                    if depth and len(payloads[queue[0]][0]) > _PREFETCH_MAX_CHARS:
                        continue  # a big payload could block send() on a busy worker's pipe
                    if not w.items and not w.proc.is_alive():
                        self._replace(k)
                        continue
                    idx = queue.popleft()
                    try:
                        w.conn.send(((self._batch, idx), *payloads[idx]))
                    except Exception:
                        queue.appendleft(idx)
                        self._requeue(k, queue)
                        continue
                    if not w.items:
                        w.deadline = time.monotonic() + self.timeout
                    w.items.append(idx)

            # wait for results / ready messages / the next deadline
            now = time.monotonic()
            wake = [w.deadline for w in self._workers if w.items]
            wake += [w.started + self.startup_timeout for w in self._workers if not w.ready]
            wait_s = max(0.0, min(wake) - now) if wake else None
            conns = {w.conn: k for k, w in enumerate(self._workers) if w.items or not w.ready}
            if not conns:  # nothing in flight and nobody starting: cannot happen with a queue
                raise RuntimeError("grading pool has no live workers")
            for conn in _mp_wait(list(conns), timeout=wait_s):
                k = conns[conn]
                w = self._workers[k]
                try:
                    while True:  # drain everything already sent
                        msg = conn.recv()
                        if msg[0] == "ready":
                            w.ready = True
                            startup_failures = 0
                        else:
                            (batch, idx), (correct, method, extracted, timed_out, error) = msg
                            if batch == self._batch and w.items and idx == w.items[0]:
                                w.items.popleft()
                                self._record(results, idx, GradeResult(
                                    bool(correct), method, extracted, bool(timed_out), error))
                                w.deadline = time.monotonic() + self.timeout if w.items else None
                        if not conn.poll():
                            break
                except Exception:  # EOF: the worker died
                    if not w.ready:
                        startup_failures += 1
                        if startup_failures > 3 * self.n_workers:
                            raise RuntimeError("grading workers exit during startup")
                    if w.items:
                        idx = w.items.popleft()
                        self._record(results, idx, GradeResult(
                            False, None, _clip(payloads[idx][2]), error="worker died while grading"))
                    self._requeue(k, queue)

            # enforce deadlines
            now = time.monotonic()
            for k, w in enumerate(self._workers):
                if w.items and now >= w.deadline:
                    idx = w.items.popleft()
                    self._record(results, idx, GradeResult(
                        False, None, _clip(payloads[idx][2]), timed_out=True))
                    self._requeue(k, queue)
                elif not w.ready and now >= w.started + self.startup_timeout:
                    startup_failures += 1
                    if startup_failures > 3 * self.n_workers:
                        raise RuntimeError("grading workers fail to start")
                    self._replace(k)
        return results  # type: ignore[return-value]

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if os.getpid() != self._owner_pid:
                return
            for w in self._workers:
                try:
                    if not w.items:
                        w.conn.send(None)
                except Exception:
                    pass
            deadline = time.monotonic() + 2.0
            for w in self._workers:
                try:
                    w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
                except Exception:
                    pass
                self._kill(w)
            self._workers = []

    def __enter__(self) -> "GradingPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _ensure_preload(ctx) -> None:
    """Add our worker module to the forkserver preload list (keeping any existing entries).

    Takes effect only if the forkserver is not running yet; otherwise workers import the
    dependencies themselves (slower start, same behaviour).
    """
    try:
        from multiprocessing import forkserver

        current = list(getattr(forkserver._forkserver, "_preload_modules", []) or [])
        if _PRELOAD not in current:
            ctx.set_forkserver_preload(current + [_PRELOAD])
    except Exception:
        pass


_default_pool: GradingPool | None = None
_default_lock = threading.Lock()


def default_pool() -> GradingPool:
    """A process-wide shared pool (2 workers, 10 s), created lazily and closed at exit."""
    global _default_pool
    with _default_lock:
        p = _default_pool
        if p is None or p._closed or p._owner_pid != os.getpid():
            p = GradingPool()
            _default_pool = p
        return p


@atexit.register
def _close_default_pool() -> None:
    p = _default_pool
    if p is not None and p._owner_pid == os.getpid():
        try:
            p.close()
        except Exception:
            pass
