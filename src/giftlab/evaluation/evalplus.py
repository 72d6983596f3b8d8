"""HumanEval+ / MBPP+ from the EvalPlus release files, scored the way EvalPlus scores them.

The release files (``HumanEvalPlus-v0.1.10.jsonl.gz``, ``MbppPlus-v0.2.0.jsonl.gz``) carry no test
script: each row has ``task_id, prompt, entry_point, canonical_solution, base_input, plus_input, atol,
contract`` (MBPP+ also ``assertion``, the original MBPP asserts). What EvalPlus 0.3.1 does with them
(``evalplus/evaluate.py``, ``evalplus/eval/__init__.py``):

1. **expected outputs**: the canonical solution (``prompt + canonical_solution``) is run on every base
   and plus input (MBPP+ inputs first turned back into tuples/sets/complex, ``mbpp_deserialize_inputs``),
   each call timed (``trusted_exec``);
2. **per-input time limit**: ``max(min_time_limit, gt_time_limit_factor * t_gt)`` with the defaults
   1 s and 4.0; the whole test set gets ``min(60, sum(limits)) + 1`` seconds (+1 more to collect);
3. **check** (``untrusted_check``, one fresh process per (solution, test set)): the solution is exec'd,
   then each input runs under its own limit and its output is compared with the expected one: ``==``,
   ``np.allclose(rtol=1e-7, atol)`` for floats (atol forced to 1e-6 for float outputs), and special
   oracles (``find_zero``: ``|poly(x)| <= atol``; MBPP+: set equality for 8 tasks, "not None" for 3,
   and 4 task-specific ones); a solution passes a set only if every input passes;
4. **scores**: *base* = the base set passes (HumanEval / MBPP); *plus* = base **and** plus sets pass
   (HumanEval+ / MBPP+, the number papers report).

Here the same happens inside this project's sandbox (:func:`giftlab.evaluation.sandbox.run_program`,
its isolation unchanged): the harness :mod:`giftlab.evaluation._evalplus_child` runs in the contained
child, one child per canonical solution (both sets; computed once per record and cached) and one per
(candidate, test set). :func:`release_record` turns a release row into a record of this project's
schema (``kind="code"``, the same prompt templates as the HF-format rows) plus what the runner needs
(``base_inputs``, ``plus_inputs``, ``atol``, ``canonical_solution``, ``evalplus_dataset``), and
:class:`EvalPlusRunner` scores a candidate program.

Departures from EvalPlus, all deliberate:

* code extraction is this project's (:func:`giftlab.evaluation.sandbox.extract_code`) and the program is
  assembled as for the HF-format rows (``build_program``'s rule: the prompt's imports first; for
  HumanEval the prompt before the answer, which may call its helpers), where EvalPlus uses
  ``sanitize`` or ``prompt + completion``;
* each child is a new interpreter (not a fork), so the wall clock of a test set is EvalPlus's bound plus
  ``startup_s`` (default 5 s) for interpreter start and loading the inputs; per-input limits are exact;
* memory: the sandbox's limit (``code_memory_mb``, default 2 GiB) instead of EvalPlus's 4 GiB;
* ``find_zero`` (HumanEval/32): EvalPlus 0.3.1 fails every solution there, the canonical one included
  (its oracle ``continue``s before recording the input as passed); here a root within ``atol`` passes;
* the plus set is not run when the base set already failed (``plus`` is False either way), unless
  ``always_run_plus=True``;
* the canonical outputs are computed once per evaluation process (EvalPlus caches them on disk).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

from giftlab.evaluation.code_prompts import HUMANEVAL_TEMPLATE, MBPP_TEMPLATE, import_lines
from giftlab.evaluation.sandbox import DEFAULT_LIMITS, run_program

__all__ = ["DEFAULT_MIN_TIME_LIMIT", "DEFAULT_GT_TIME_LIMIT_FACTOR", "is_release_row", "release_record",
           "time_limits", "EvalPlusResult", "EvalPlusRunner", "is_evalplus_record"]

DEFAULT_MIN_TIME_LIMIT = 1.0          # evalplus/config.py
DEFAULT_GT_TIME_LIMIT_FACTOR = 4.0    # evalplus/config.py
TIMEOUT_PER_TASK = 60.0               # EVALPLUS_TIMEOUT_PER_TASK's default
DATASETS = ("humaneval", "mbpp")

_HARNESS = Path(__file__).with_name("_evalplus_child.py")
_RELEASE_KEYS = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input",
                 "atol")
_ORACLE_TAG, _RESULT_TAG = "GIFTLAB_EVALPLUS_ORACLE", "GIFTLAB_EVALPLUS_RESULT"


def is_release_row(row: dict) -> bool:
    """An EvalPlus release row (recognised by its content: ``base_input`` / ``plus_input``)."""
    return isinstance(row, dict) and ("base_input" in row or "plus_input" in row)


def is_evalplus_record(record: dict) -> bool:
    """A record made by :func:`release_record` (scored input by input, not by a test script)."""
    return isinstance(record, dict) and record.get("base_inputs") is not None


def _mbpp_text_and_tests(prompt: str, assertion: str | None) -> tuple[str, list[str]]:
    """The task sentence and the example asserts of an MBPP+ release prompt (a docstring holding the
    sentence and the first original assert); the asserts come from ``assertion`` when present."""
    body = prompt.strip()
    for quote in ('"""', "'''"):
        if body.startswith(quote) and body.endswith(quote) and len(body) >= 6:
            body = body[3:-3]
            break
    lines = [ln.rstrip() for ln in body.strip().splitlines()]
    text = "\n".join(ln for ln in lines if not ln.lstrip().startswith("assert ")).strip()
    asserts = [ln.strip() for ln in (assertion or "").splitlines() if ln.strip().startswith("assert")]
    if not asserts:
        asserts = [ln.strip() for ln in lines if ln.lstrip().startswith("assert ")]
    return text, asserts


def release_record(row: dict, i: int, dataset: str) -> dict:
    """A record of this project's schema from one EvalPlus release row (``dataset``: humaneval | mbpp).

    Raises ``ValueError`` naming the bad field (the loader adds the file and the row).
    """

    if dataset not in DATASETS:
        raise ValueError(f"unknown EvalPlus dataset {dataset!r}")
    missing = [k for k in _RELEASE_KEYS if k not in row or row[k] is None]
    if missing:
        raise ValueError(f"EvalPlus release row without {', '.join(missing)}")
    if row["plus_input"] == {}:  # MbppPlus v0.2.0's Mbpp/793: no plus inputs (EvalPlus iterates the {} as none)
        row = {**row, "plus_input": []}
    for key in ("base_input", "plus_input"):
        value = row[key]
        if not isinstance(value, list) or not all(isinstance(x, (list, tuple)) for x in value):
            raise ValueError(f"{key} must be a list of argument lists")
    if not row["base_input"]:
        raise ValueError("base_input is empty")
    try:
        atol = float(row["atol"])
    except (TypeError, ValueError):
        raise ValueError(f"atol {row['atol']!r} is not a number") from None
    if not math.isfinite(atol) or atol < 0:
        raise ValueError(f"atol {row['atol']!r} is not a finite non-negative number")
    entry = str(row["entry_point"]).strip()
    if not entry.isidentifier():
        raise ValueError(f"entry_point {row['entry_point']!r} is not a Python name")
    prompt, tid = str(row["prompt"]), row["task_id"]
    if dataset == "humaneval":
        rid = str(tid)
        rec = {"prompt": HUMANEVAL_TEMPLATE.format(prompt=prompt), "setup": import_lines(prompt),
               "prefix": prompt}
    else:
        rid = str(tid) if str(tid).startswith("Mbpp/") else f"Mbpp/{tid}"
        text, asserts = _mbpp_text_and_tests(prompt, row.get("assertion"))
        if not text:
            raise ValueError("prompt holds no task description")
        rec = {"prompt": MBPP_TEMPLATE.format(text=text, tests="\n".join(asserts[:3])), "setup": "",
               "prefix": ""}
    return {"id": rid, **rec, "gold": "", "kind": "code", "entry_point": entry,
            "evalplus_dataset": dataset, "task_id": str(tid),
            "canonical_solution": prompt + str(row["canonical_solution"]),
            "base_inputs": row["base_input"], "plus_inputs": row["plus_input"], "atol": atol}


def time_limits(ref_times, min_time_limit: float = DEFAULT_MIN_TIME_LIMIT,
                gt_time_limit_factor: float = DEFAULT_GT_TIME_LIMIT_FACTOR) -> list[float]:
    """EvalPlus's per-input limits from the canonical solution's times."""
    return [max(min_time_limit, gt_time_limit_factor * t) for t in ref_times]


@dataclass
class EvalPlusResult:
    base: bool                       # the base tests pass (HumanEval / MBPP)
    plus: bool                       # base and plus tests pass (HumanEval+ / MBPP+)
    base_status: str                 # pass | fail | timeout | error
    plus_status: str                 # pass | fail | timeout | error | not_run
    base_details: list = field(default_factory=list)   # per-input verdicts, up to the first failure
    plus_details: list = field(default_factory=list)
    seconds: float = 0.0
    timed_out: bool = False          # a whole test set ran past its wall clock
    error: str | None = None
    guards: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        """A sandbox-style status for :class:`giftlab.evaluation.grading.ItemResult.detail`."""
        if self.plus:
            return "passed"
        if "timeout" in (self.base_status, self.plus_status):
            return "timeout"
        if "error" in (self.base_status, self.plus_status):
            return "error"
        return "failed"


def _last_tagged(stdout: str, tag: str):
    hits = [ln for ln in stdout.splitlines() if ln.startswith(tag + " ")]
    if not hits:
        return None
    try:
        return json.loads(hits[-1][len(tag) + 1:])
    except ValueError:
        return None


def _program(payload: dict) -> str:
    return _HARNESS.read_text() + f"\n\n_evalplus_main({json.dumps(json.dumps(payload))})\n"


class EvalPlusRunner:
    """Score programs on EvalPlus records in the sandbox; the canonical outputs are cached per record.

    ``min_time_limit`` / ``gt_time_limit_factor``: EvalPlus's (1 s, 4.0); ``memory_mb``: the sandbox's
    RLIMIT_AS; ``startup_s``: wall-clock allowance per child on top of EvalPlus's bound;
    ``oracle_timeout``: wall clock for computing a record's expected outputs; other keyword arguments go
    to :func:`run_program`. Thread-safe (the code grader runs several samples at once).
    """

    def __init__(self, min_time_limit: float = DEFAULT_MIN_TIME_LIMIT,
                 gt_time_limit_factor: float = DEFAULT_GT_TIME_LIMIT_FACTOR,
                 memory_mb: int | None = DEFAULT_LIMITS["memory_mb"], startup_s: float = 5.0,
                 oracle_timeout: float = 300.0, always_run_plus: bool = False, fast_check: bool = True,
                 **sandbox_kwargs):
        self.min_time_limit, self.factor = float(min_time_limit), float(gt_time_limit_factor)
        self.memory_mb, self.startup_s = memory_mb, float(startup_s)
        self.oracle_timeout, self.always_run_plus = float(oracle_timeout), bool(always_run_plus)
        self.fast_check = bool(fast_check)
        self.sandbox_kwargs = sandbox_kwargs
        self._oracles: dict = {}
        self._locks: dict = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ expected outputs
    def _oracle_key(self, record: dict) -> tuple:
        return (record["id"], record["canonical_solution"], json.dumps(record["base_inputs"]),
                json.dumps(record["plus_inputs"]))

    def oracle(self, record: dict) -> dict:
        """``{"base"|"plus": {"times": [...], "expected": <base64 pickle>}}`` from the canonical solution
        (run in the sandbox); raises ``RuntimeError`` when the canonical solution itself fails."""
        key = self._oracle_key(record)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one computation per record, whatever the number of threads asking
            out = self._oracles.get(key)
            if out is None:
                out = self._oracles[key] = self._compute_oracle(record)
        if isinstance(out, Exception):  # cached too: every sample of the record gets the same error
            raise out
        return out

    def _compute_oracle(self, record: dict) -> dict | Exception:
        payload = {"mode": "oracle", "dataset": record["evalplus_dataset"],
                   "task_id": record.get("task_id", record["id"]),
                   "entry_point": record["entry_point"], "code": record["canonical_solution"],
                   "base_inputs": record["base_inputs"], "plus_inputs": record["plus_inputs"]}
        res = run_program(_program(payload), timeout=self.oracle_timeout, memory_mb=self.memory_mb,
                          stdout_chars=1 << 30, **self.sandbox_kwargs)
        out = _last_tagged(res.stdout, _ORACLE_TAG) if res.passed else None
        if out is None:
            tail = res.stderr.strip().splitlines()[-1:] or [res.status]
            return RuntimeError(f"{record['id']}: the canonical solution failed in the sandbox "
                                f"({res.status}): {tail[0][:300]}")
        return out

    # ------------------------------------------------------------------ one test set
    def _run_set(self, record: dict, code: str, name: str, oracle: dict) -> tuple[str, list, float, dict]:
        inputs = record[f"{name}_inputs"]
        limits = time_limits(oracle[name]["times"], self.min_time_limit, self.factor)
        wall = min(TIMEOUT_PER_TASK, sum(limits)) + 1 + (0 if self.fast_check else 1) + 1
        payload = {"mode": "check", "dataset": record["evalplus_dataset"],
                   "task_id": record.get("task_id", record["id"]), "entry_point": record["entry_point"],
                   "code": code, "inputs": inputs, "expected": oracle[name]["expected"],
                   "time_limits": limits, "atol": record["atol"], "fast_check": self.fast_check}
        res = run_program(_program(payload), timeout=wall + self.startup_s, memory_mb=self.memory_mb,
                          stdout_chars=1 << 20, **self.sandbox_kwargs)
        out = _last_tagged(res.stdout, _RESULT_TAG)
        if res.passed and out is not None:
            return out["status"], list(out["details"]), res.seconds, res.guards
        if res.timed_out:
            return "timeout", [], res.seconds, res.guards
        return ("error" if res.status == "error" else "fail"), [], res.seconds, res.guards

    def check(self, record: dict, code: str) -> EvalPlusResult:
        """Base and plus verdicts of the complete program ``code`` on ``record``."""
        oracle = self.oracle(record)
        base_status, base_details, s1, guards = self._run_set(record, code, "base", oracle)
        if base_status == "pass" or self.always_run_plus:
            plus_status, plus_details, s2, _ = self._run_set(record, code, "plus", oracle)
        else:
            plus_status, plus_details, s2 = "not_run", [], 0.0
        base = base_status == "pass"
        return EvalPlusResult(base=base, plus=base and plus_status == "pass", base_status=base_status,
                              plus_status=plus_status, base_details=base_details,
                              plus_details=plus_details, seconds=s1 + s2,
                              timed_out="timeout" in (base_status, plus_status), guards=guards)
