"""The GIFT reward cascade (paper App. E.3; GIFT ``my_reward_func_with_timeout``).

(a) OpenMathInstruct: the last ``\\boxed{}`` (brace-matched) vs gold with ``math_equal``
    (string, numeric with tolerance, symbolic). If it says correct, the reward is 1.
(b) otherwise Math-Verify: ``verify(gold=parse("\\boxed{$" + gold + "$}"), target=parse(answer))``,
    always with KEYWORD arguments (GIFT's positional ``verify(g, t, 6, 15, True, 3)`` means
    ``allow_set_relation_comp=3`` on math-verify >= 0.8). Two of its verdicts are overruled
    (:func:`math_verify_equal`): a match of two real numbers that are not equal within the
    relative tolerance (its ``float_rounding=6`` compares to 6 DECIMALS, an absolute floor:
    ``0.0000001 == 0.0000002``), and a match where a side did not parse to an expression (only
    its extracted strings were compared, e.g. ``x = \\text{yes}`` and ``x = \\text{no}`` both
    extract as ``x =``).
Reward 1.0 if either validates, else 0.0. Only the answer part of a response is graded (text after
the last ``</think>``, truncated to its end), see :func:`giftlab.rewards.extract.answer_part`.

:func:`grade` runs in-process with no wall-clock guard (trusted inputs, tests of the logic). For
untrusted model outputs use :class:`giftlab.rewards.pool.GradingPool`, which runs the same
:func:`grade_answer` in killable worker processes.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from dataclasses import dataclass
from math import isclose, isfinite

from .extract import DEFAULT_MAX_CHARS, answer_part, last_boxed
from .normalize import math_equal, time_limit, timeout_events

__all__ = ["GradeResult", "grade", "grade_answer", "math_verify_equal", "check_math_verify_api",
           "DEFAULT_INNER_TIMEOUT", "DEFAULT_TOLERANCE"]

#: Default per-step limit (seconds) for the signal-based timeouts inside a grading: each sympy
#: step of the OMI stage and each Math-Verify parse/compare (Math-Verify rounds to whole
#: seconds). GIFT used 3 s for ``verify`` (its intended ``timeout_seconds``) and 5 s for ``parse``.
#: These only fire in the main thread; the hard bound is the pool's wall clock.
DEFAULT_INNER_TIMEOUT = 3.0

#: Relative tolerance for numbers (OMI's ``math_equal`` default). There is no absolute one.
DEFAULT_TOLERANCE = 1e-4

_EXTRACTED_MAX = 1000  # characters of the extracted answer kept in a GradeResult


@dataclass
class GradeResult:
    """Outcome of one grading.

    correct: reward is ``1.0`` iff True.
    method: ``"omi"`` or ``"math_verify"`` (the stage that validated), ``None`` if incorrect.
    extracted: the answer that was graded (OMI: content of the last ``\\boxed{}``; Math-Verify: its
        extracted string), truncated to 1000 chars; ``None`` if nothing was extracted.
    timed_out: a time limit fired (the pool's wall clock, or an inner per-step alarm) and the item
        scored 0.
    error: an exception or a dead worker made the item score 0 (message), else ``None``.
    """

    correct: bool
    method: str | None
    extracted: str | None
    timed_out: bool = False
    error: str | None = None

    @property
    def score(self) -> float:
        return 1.0 if self.correct else 0.0


def _clip(s):
    if s is None:
        return None
    s = s if isinstance(s, str) else str(s)
    return s[:_EXTRACTED_MAX]


def _exc_message(e: BaseException) -> str:
    # Never str() arbitrary sympy payloads (can be huge / hang): type name + a short str arg.
    msg = type(e).__name__
    if e.args and isinstance(e.args[0], str):
        msg += ": " + e.args[0][:200]
    return msg


# --------------------------------------------------------------------------------------------
# Math-Verify
# --------------------------------------------------------------------------------------------

_VERIFY_KWARGS = ("gold", "target", "float_rounding", "numeric_precision", "strict",
                  "allow_set_relation_comp", "timeout_seconds")
_PARSE_KWARGS = ("pred", "parsing_timeout")


@functools.lru_cache(maxsize=None)
def check_math_verify_api() -> None:
    """Fail loudly (RuntimeError) if math-verify's signatures no longer have the keywords we pass.

    A positional call would silently change meaning across versions (GIFT's bug); a keyword that
    vanished would raise TypeError inside every grading and be swallowed as "incorrect".
    """
    import math_verify

    for fn, names in ((math_verify.verify, _VERIFY_KWARGS), (math_verify.parse, _PARSE_KWARGS)):
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):  # e.g. a C function or a test double: cannot check
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        missing = [n for n in names if n not in params]
        if missing:
            raise RuntimeError(f"math_verify.{fn.__name__} lacks keyword(s) {missing}: "
                               "the installed math-verify API changed; update giftlab.rewards")


class _MVTimeoutCounter(logging.Handler):
    """Counts Math-Verify's own timeouts: with raise_on_error=False it only logs a warning."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record):  # never formats the (possibly huge) message args
        if isinstance(record.msg, str) and record.msg.startswith("Timeout during"):
            self.count += 1


_GOLD_CACHE: dict = {}
_GOLD_CACHE_MAX = 4096


def _mv_timeout(inner_timeout: float | None):
    """Math-Verify timeout argument: whole seconds in the main thread, None (disabled) elsewhere."""
    if inner_timeout is None or threading.current_thread() is not threading.main_thread():
        return None
    return max(1, int(round(inner_timeout)))


def _real_value(parsed, timeout: float | None):
    """The value of a Math-Verify parse whose expression is one closed-form real number, else None."""
    expr = next((x for x in parsed if not isinstance(x, str)), None)
    try:
        if expr is None or not getattr(expr, "is_number", False) or expr.free_symbols:
            return None
        with time_limit(timeout):
            v = complex(expr.evalf(15))
    except Exception:
        return None
    return v.real if v.imag == 0 and isfinite(v.real) else None


def _overrule_math_verify(gold_parsed, pred_parsed, tolerance: float, timeout: float | None) -> bool:
    """True when a Math-Verify match must not count (see the module docstring).

    * a side has no parsed expression: the match can only be its string fallback, which compares
      extracted text that may have lost the answer (``\\text{..}`` is dropped as a unit);
    * both sides are real numbers that differ by more than ``tolerance`` RELATIVE to the larger:
      its ``round(6)`` comparison can only be looser than that below ~1e-2 in magnitude.
    """
    if all(isinstance(x, str) for x in gold_parsed) or all(isinstance(x, str) for x in pred_parsed):
        return True
    a, b = _real_value(gold_parsed, timeout), _real_value(pred_parsed, timeout)
    return a is not None and b is not None and not isclose(a, b, rel_tol=tolerance)


def math_verify_equal(answer: str, gold: str, inner_timeout: float | None = DEFAULT_INNER_TIMEOUT,
                      tolerance: float = DEFAULT_TOLERANCE):
    """Math-Verify stage. Returns ``(correct, extracted_str, timed_out)``.

    Exceptions from math-verify's API (e.g. TypeError after an API change) propagate; its own
    parse/compare failures are ``False`` (``raise_on_error=False``), as in GIFT. A match is
    overruled by :func:`_overrule_math_verify` (no absolute tolerance; no string-only matches).
    """
    import math_verify

    check_math_verify_api()
    t = _mv_timeout(inner_timeout)
    counter = _MVTimeoutCounter()
    mv_logger = logging.getLogger("math_verify")
    mv_logger.addHandler(counter)
    try:
        key = (gold, t)
        gold_parsed = _GOLD_CACHE.get(key)
        if gold_parsed is None:
            before = counter.count
            gold_parsed = math_verify.parse(pred="\\boxed{$" + gold + "$}", parsing_timeout=t)
            if counter.count == before:
                if len(_GOLD_CACHE) >= _GOLD_CACHE_MAX:
                    _GOLD_CACHE.clear()
                _GOLD_CACHE[key] = gold_parsed
        pred_parsed = math_verify.parse(pred=answer, parsing_timeout=t)
        ok = bool(math_verify.verify(
            gold=gold_parsed,
            target=pred_parsed,
            float_rounding=6,
            numeric_precision=15,
            strict=True,
            allow_set_relation_comp=False,
            timeout_seconds=t,
        ))
        if ok and _overrule_math_verify(gold_parsed, pred_parsed, tolerance, inner_timeout):
            ok = False
    finally:
        mv_logger.removeHandler(counter)
    extracted = None
    for item in pred_parsed:  # parse() returns [sympy objects..., raw string fallback]
        if isinstance(item, str):
            extracted = item
    return ok, extracted, counter.count > 0


# --------------------------------------------------------------------------------------------
# the cascade
# --------------------------------------------------------------------------------------------


def grade_answer(answer: str, gold: str, inner_timeout: float | None = DEFAULT_INNER_TIMEOUT,
                 omi_extracted: str | None = None, omi_done: bool = False,
                 include_percentage: bool = True) -> GradeResult:
    """Grade an ANSWER PART (already selected/truncated) against ``gold`` with the cascade.

    ``omi_done=True`` skips the OMI stage (the caller already ran it and it said incorrect).
    ``include_percentage``: OMI's percent rule, a number also matches gold/100 and gold*100
    (``0.5`` == ``50``); on by default, as in GIFT (config ``eval.percent_rule`` /
    ``grpo.percent_rule``). Math-Verify has no such rule.
    Never raises for bad input: exceptions become ``error``.
    """
    error = None
    alarms_before = timeout_events()
    extracted = omi_extracted if omi_done else last_boxed(answer)
    if not omi_done:
        try:
            if math_equal(extracted, gold, include_percentage, DEFAULT_TOLERANCE,
                          timeout=inner_timeout):
                return GradeResult(True, "omi", _clip(extracted))
        except Exception as e:  # GIFT: except Exception -> False
            error = "omi: " + _exc_message(e)
    mv_timed_out = False
    try:
        ok, mv_extracted, mv_timed_out = math_verify_equal(answer, gold, inner_timeout,
                                                           DEFAULT_TOLERANCE)
        if ok:
            return GradeResult(True, "math_verify", _clip(mv_extracted))
    except Exception as e:
        error = "math_verify: " + _exc_message(e)
    timed_out = mv_timed_out or timeout_events() > alarms_before
    return GradeResult(False, None, _clip(extracted), timed_out=timed_out, error=error)


def grade(response: str, gold: str, max_chars: int | None = DEFAULT_MAX_CHARS,
          inner_timeout: float | None = DEFAULT_INNER_TIMEOUT,
          include_percentage: bool = True) -> GradeResult:
    """In-process grading of a full response: answer part, then the cascade.

    No wall-clock guard: a C-level hang (power towers, huge integers) hangs the caller. Inner
    signal-based limits apply only in the main thread. Use :class:`GradingPool` for untrusted
    model outputs.
    """
    if gold is None or (isinstance(gold, str) and not gold.strip()):
        return GradeResult(False, None, None, error="empty gold answer")
    if not isinstance(gold, str):
        gold = str(gold)
    try:
        answer = answer_part(response, max_chars)
    except Exception as e:
        return GradeResult(False, None, None, error=_exc_message(e))
    return grade_answer(answer, gold, inner_timeout, include_percentage=include_percentage)
