"""Graders per record kind, behind one dispatcher.

>>> with make_grader("multiple_choice") as grade_fn:              # doctest: +SKIP
...     results = grade_fn(responses, records)

Every grader is a context manager yielding ``grade_fn(responses, golds_or_records)`` that returns
one result per response with ``.correct``, ``.extracted``, ``.timed_out`` (and ``.error``,
``.detail``), in order, and never raises for a bad response:

* ``math``: the RL reward's cascade, ``giftlab.rewards.GradingPool.grade_many`` (OMI +
  Math-Verify in killable workers); takes gold strings (or records, whose ``gold`` is used);
* ``multiple_choice``: :func:`giftlab.evaluation.choice.extract_letter` == ``record["gold"]``;
* ``code``: the extracted program + the record's tests run in
  :func:`giftlab.evaluation.sandbox.run_program` (a separate contained process per sample,
  ``code_workers`` at a time); records from the EvalPlus release files (``base_inputs``) are scored
  EvalPlus's way instead (:mod:`giftlab.evaluation.evalplus`: each input under its own time limit,
  outputs compared with the canonical solution's): ``correct`` = base and plus tests pass (HumanEval+ /
  MBPP+), ``base`` = the base tests pass (HumanEval / MBPP);
* ``auto``: routes each item by ``record["kind"]`` (mixed benchmarks), building the sub-graders
  lazily.

``grade_fn.wants_records`` is True for graders that need whole records (the runner then passes
records instead of gold strings).
"""

from __future__ import annotations

import ast
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from giftlab.evaluation.choice import extract_letter
from giftlab.evaluation.evalplus import EvalPlusRunner, is_evalplus_record
from giftlab.evaluation.sandbox import DEFAULT_LIMITS, extract_code, run_program

__all__ = ["ItemResult", "make_grader", "grade_multiple_choice", "build_program", "CodeGrader",
           "code_settings"]


@dataclass
class ItemResult:
    correct: bool
    extracted: str | None
    timed_out: bool = False
    error: str | None = None
    detail: str | None = None  # e.g. the sandbox status: passed | failed | timeout | killed
    seconds: float | None = None
    base: bool | None = None  # EvalPlus records: the base tests pass (``correct`` = base and plus pass)


def _gold(x) -> str:
    return str(x["gold"]) if isinstance(x, dict) else str(x)


def _records_only(items, kind: str) -> list[dict]:
    if not all(isinstance(x, dict) for x in items):
        raise TypeError(f"the {kind} grader needs records (dicts), not gold strings")
    return list(items)


# --------------------------------------------------------------------------- multiple choice


def grade_multiple_choice(responses, records) -> list[ItemResult]:
    out = []
    for resp, rec in zip(responses, records, strict=True):
        try:
            n = len(rec.get("choices") or "ABCD") if isinstance(rec, dict) else 10
            letter = extract_letter(resp, n_choices=n)
            out.append(ItemResult(letter is not None and letter == _gold(rec).strip(), letter))
        except Exception as exc:  # noqa: BLE001 - a bad item scores 0, never aborts a run
            out.append(ItemResult(False, None, error=f"{type(exc).__name__}: {exc}"))
    return out


grade_multiple_choice.wants_records = True


# --------------------------------------------------------------------------- code


#: ``__name__`` while the solution runs. The sandbox runs a program as ``__main__``, but human-eval, EvalPlus and HF
#: ``code_eval`` exec the solution in fresh globals (``exec(program, {})``), where ``__name__`` resolves to the
#: builtins module's, ``"builtins"``: a solution's own ``if __name__ == "__main__":`` demo (``input()``, its own
#: asserts) never runs there, and must not fail it here. The tests then run with ``__name__`` back to ``__main__``.
SOLUTION_NAME = "builtins"
_FUTURE_IMPORT = re.compile(r"^from[ \t]+__future__[ \t]+import[ \t]*(?:\([^)]*\)[^\n]*|[^\n]*)(?:\n|$)", re.M)


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def build_program(code: str, record: dict) -> str:
    """Solution + tests as one script: setup imports, (HumanEval prefix), solution, tests; the solution part runs
    with ``__name__`` = :data:`SOLUTION_NAME` (see there), the tests with ``__name__`` restored. The solution's
    ``from __future__`` imports go first (Python accepts them nowhere else)."""
    entry = record.get("entry_point")
    future = [m.group(0).rstrip("\n") for m in _FUTURE_IMPORT.finditer(code)]
    code = _FUTURE_IMPORT.sub("", code) if future else code
    parts = [*future, record.get("setup") or "", f"__name__ = {SOLUTION_NAME!r}"]
    prefix = record.get("prefix")
    if entry and prefix and (f"def {entry}" not in code or _parses(prefix)):
        # a completion-style answer is the body of the prompt's def; a whole function may call the helpers the
        # prompt defines (HumanEval/10's is_palindrome, /32's poly, /38's encode_cyclic), and its def replaces
        # the prompt's docstring-only one
        parts.append(prefix)
    parts += [code, "", "__name__ = '__main__'", record.get("tests") or ""]
    return "\n".join(p for p in parts if p is not None)


def code_settings(timeout: float | None = None, memory_mb: int | None = None,
                  workers: int | None = None) -> dict:
    """The pinned code-execution limits (recorded in every summary)."""
    return {"code_timeout": float(DEFAULT_LIMITS["timeout"] if timeout is None else timeout),
            "code_memory_mb": int(DEFAULT_LIMITS["memory_mb"] if memory_mb is None
                                  else memory_mb),
            "code_workers": int(2 if workers is None else workers)}


class CodeGrader:
    """Run each (response, record) in the sandbox; ``workers`` programs at a time."""

    wants_records = True

    def __init__(self, timeout: float | None = None, memory_mb: int | None = None,
                 workers: int | None = None, **sandbox_kwargs):
        s = code_settings(timeout, memory_mb, workers)
        self.timeout, self.memory_mb, self.workers = (s["code_timeout"], s["code_memory_mb"],
                                                      max(1, s["code_workers"]))
        self.sandbox_kwargs = sandbox_kwargs
        self.guards: dict = {}
        self.evalplus = EvalPlusRunner(memory_mb=self.memory_mb, **sandbox_kwargs)

    def check_references(self, records) -> None:
        """Run each EvalPlus record's canonical solution (its expected outputs, cached for the grading) before any
        sample is drawn: one that fails in the sandbox means a broken record or sandbox, and stops the job in one line
        naming the task, where it would otherwise score every sample of that task 0, after the generation."""
        from giftlab.cli import JobFailed

        evalplus = [r for r in records if is_evalplus_record(r)]
        try:
            with ThreadPoolExecutor(self.workers) as ex:
                list(ex.map(self.evalplus.oracle, evalplus))
        except RuntimeError as exc:
            raise JobFailed(f"{exc} (before any sample was drawn)") from None

    def _one(self, response, record) -> ItemResult:
        # an EvalPlus sample that never reaches the tests fails the base tests too (base_pass@1's denominator)
        failed_base = False if is_evalplus_record(record) else None
        try:
            code = extract_code(response, record.get("entry_point"))
            if code is None:
                return ItemResult(False, None, detail="no_code", base=failed_base)
            if failed_base is not None:
                return self._one_evalplus(code, record)
            res = run_program(build_program(code, record), timeout=self.timeout,
                              memory_mb=self.memory_mb, **self.sandbox_kwargs)
            if res.guards and not self.guards:
                self.guards = dict(res.guards)
            err = res.stderr[-500:] if res.status == "error" else None
            return ItemResult(res.passed, code[:4000], timed_out=res.timed_out, error=err,
                              detail=res.status, seconds=res.seconds)
        except Exception as exc:  # noqa: BLE001
            return ItemResult(False, None, error=f"{type(exc).__name__}: {exc}", detail="error",
                              base=failed_base)

    def _one_evalplus(self, code: str, record: dict) -> ItemResult:
        res = self.evalplus.check(record, build_program(code, record))
        if res.guards and not self.guards:
            self.guards = dict(res.guards)
        return ItemResult(res.plus, code[:4000], timed_out=res.timed_out, error=res.error,
                          detail=res.status, seconds=res.seconds, base=res.base)

    def __call__(self, responses, records) -> list[ItemResult]:
        responses, records = list(responses), _records_only(records, "code")
        if len(responses) != len(records):
            raise ValueError(f"{len(responses)} responses but {len(records)} records")
        if self.workers == 1 or len(responses) <= 1:
            return [self._one(r, rec) for r, rec in zip(responses, records)]
        with ThreadPoolExecutor(self.workers) as ex:
            return list(ex.map(self._one, responses, records))


# --------------------------------------------------------------------------- math


@contextmanager
def _math_pool(workers: int, timeout: float):
    from giftlab.rewards import GradingPool

    with GradingPool(workers=workers, timeout=timeout) as pool:
        yield pool.grade_many


# --------------------------------------------------------------------------- dispatcher


class _Dispatch:
    """Route items to per-kind graders by ``record["kind"]``; sub-graders built on first use."""

    wants_records = True

    def __init__(self, factory: Callable[[str], Any], stack: ExitStack):
        self.factory, self.stack, self.graders = factory, stack, {}

    def _grader(self, kind):
        if kind not in self.graders:
            self.graders[kind] = self.stack.enter_context(self.factory(kind))
        return self.graders[kind]

    def check_references(self, records) -> None:
        """:meth:`CodeGrader.check_references` for the code records (the other kinds have none)."""
        code = [r for r in _records_only(records, "auto") if r.get("kind") == "code"]
        if code:
            self._grader("code").check_references(code)

    def __call__(self, responses, records):
        responses, records = list(responses), _records_only(records, "auto")
        out: list[Any] = [None] * len(responses)
        by_kind: dict[str, list[int]] = {}
        for i, rec in enumerate(records):
            by_kind.setdefault(rec.get("kind", "math"), []).append(i)
        for kind, idx in by_kind.items():
            fn = self._grader(kind)
            items = [records[i] for i in idx]
            if not getattr(fn, "wants_records", False):
                items = [_gold(r) for r in items]
            for i, res in zip(idx, fn([responses[i] for i in idx], items), strict=True):
                out[i] = res
        return out


def _wrap_records(fn):
    """A gold-string grader that also accepts records."""
    def grade(responses, golds):
        return fn(responses, [_gold(g) for g in golds])
    grade.wants_records = False
    return grade


@contextmanager
def make_grader(kind: str, *, math_workers: int = 2, math_timeout: float = 10.0,
                math_pool: Callable | None = None, code_timeout: float | None = None,
                code_memory_mb: int | None = None, code_workers: int | None = None,
                **sandbox_kwargs) -> Iterator[Callable]:
    """Context manager yielding ``grade_fn(responses, golds_or_records)`` for ``kind``.

    ``math_pool(workers, timeout)``: a context manager yielding the math ``grade_many``
    (default: a ``giftlab.rewards.GradingPool``); injectable so callers/tests can swap it.
    """
    if kind == "math":
        with (math_pool or _math_pool)(math_workers, math_timeout) as fn:
            yield _wrap_records(fn)
    elif kind == "multiple_choice":
        yield grade_multiple_choice
    elif kind == "code":
        yield CodeGrader(code_timeout, code_memory_mb, code_workers, **sandbox_kwargs)
    elif kind == "auto":
        def factory(k):
            return make_grader(k, math_workers=math_workers, math_timeout=math_timeout,
                               math_pool=math_pool, code_timeout=code_timeout,
                               code_memory_mb=code_memory_mb, code_workers=code_workers,
                               **sandbox_kwargs)
        with ExitStack() as stack:
            yield _Dispatch(factory, stack)
    else:
        raise ValueError(f"unknown grading kind {kind!r} "
                         "(expected math, multiple_choice, code or auto)")
