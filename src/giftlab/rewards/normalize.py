"""OpenMathInstruct-style answer normalisation and ``math_equal``.

A re-implementation of the rules of ``utils/openmathinst_utils.py`` in GIFT (NVIDIA NeMo-Skills
lineage; itself from Hendrycks' MATH / ToRA / PRM800K), see docs in the functions. Deliberate
deviations, all but the last (unit words) only remove crashes or false positives:

* the symbolic stage parses LaTeX with ``latex2sympy2_extended`` (Math-Verify's parser) instead
  of ``sympy.parsing.latex.parse_latex``, which is broken beside dvc's antlr 4.9.3 pin;
* ``parse_expr`` gets the ``convert_xor`` transformation (the original parses ``2^3`` as Python
  XOR, i.e. ``1``) and is only fed strings made of a safe character set (it ``eval``s);
* per-step time limits (``setitimer``/SIGALRM) are armed only in the main thread. The original
  arms the itimer before ``signal.signal`` raises in a worker thread and so kills the whole
  process ~10 s later (rc=142). The hard bound is the parent killing the worker process;
* when a side cannot be parsed at all the symbolic stage answers False (the original then calls
  ``sympy.N`` on the raw string, which re-runs the same failed parse);
* no absolute tolerance: the original's ``_str_is_int`` rewrites any ``|x| <= 1e-7`` as ``"0"``, so
  ``0`` matched a gold ``1.24e-8``. Here only an exact zero becomes ``"0"``; numbers are equal
  within the RELATIVE ``tolerance`` (1e-4), so zero equals only zero;
* ``\\text{}`` / ``\\mbox{}`` / ``\\textbf{}``: the original cuts everything from a single
  ``\\text{`` on (so ``x = \\text{yes}`` and ``x = \\text{no}`` were both ``x=``) and turns any
  ``\\mbox{..}`` answer into ``""``. Here the cut happens only after a complete value (not after
  ``=``, ``<``, ``,`` ...), ``\\mbox``/``\\textbf``/``\\textit``/``\\textrm`` read as ``\\text``, and
  unit words after a number are dropped (``\\text{12 apples}`` -> ``12``), see
  :func:`_strip_unit_words`.

The string/numeric part (:func:`quick_math_equal`) needs no sympy and is safe to run in the
parent for short strings.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from math import isclose, isfinite

__all__ = [
    "normalize",
    "normalize_answer_string",
    "is_digit",
    "quick_math_equal",
    "math_equal",
    "symbolic_equal",
    "time_limit",
    "StepTimeout",
    "timeout_events",
]

# --------------------------------------------------------------------------------------------
# normalisation helpers (pure string code)
# --------------------------------------------------------------------------------------------


def _fix_fracs(string: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1b`` -> ``\\frac{1}{b}``, ``\\frac1{72}`` -> ``\\frac{1}{72}``."""
    while "\\frac " in string:
        string = string.replace("\\frac ", "\\frac")
    parts = string.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part[:1] == "{":
            out += part
            continue
        if len(part) < 2:
            return string
        a, b, rest = part[0], part[1], part[2:]
        if b != "{":
            out += "{" + a + "}{" + b + "}" + rest
        else:
            out += "{" + a + "}" + b + rest
    return out


_PROPER_COMMAS = re.compile(r"(\d)(,)(\d\d\d)($|\D)")


def _strip_properly_formatted_commas(expr: str) -> str:
    """Remove thousands separators (``1,000`` -> ``1000``) but not tuple commas."""
    while True:
        nxt = _PROPER_COMMAS.sub(r"\1\3\4", expr)
        if nxt == expr:
            return nxt
        expr = nxt


def _str_is_int(x: str) -> bool:
    """A number within 1e-7 of a NONZERO integer, or exactly zero.

    The original's bare ``abs(v - round(v)) <= 1e-7`` is an absolute floor: every ``|v| <= 1e-7``
    (``1.24e-8``) became ``"0"`` and then matched gold ``0``. Near a nonzero integer 1e-7 is a
    relative error of at most 1e-7, far inside the 1e-4 grading tolerance, so that part stays.
    """
    try:
        v = float(_strip_properly_formatted_commas(x))
        r = round(v)
        return v == r or (r != 0 and abs(v - r) <= 1e-7)
    except Exception:
        return False


def _str_to_int(x: str) -> int:
    x = x.replace(",", "")
    if "_" in x:  # "base" subscripts, e.g. 101_2 (float() also accepts 1_000)
        x = x.split("_")[0]
    return int(float(x))


_MIXED_NUMBER = re.compile(r"([0-9]) +([0-9])")
_MIXED_FRACTION = re.compile(r"(\d+) *\\frac{(\d+)}{(\d+)}")
_TEXT_SPLIT = re.compile(r"\\text\s*{\s*")
_TEXT_UNWRAP = re.compile(r"\\text{([^}]+)}")
_TEXT_AND_OR = re.compile(r"\s*\\text{\s*(or|and)\s*}\s*")
_DOUBLE_COMMA = re.compile(r",\s*,")
_SQRT = re.compile(r"\\sqrt(\s*\w+)")
_CIRC_DOUBLE = re.compile(r"\^ *\\\\circ")
_MINUS_SPACE = re.compile(r"- *")
_UNITS = [
    "degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "week",
    "month", "year", "foot", "feet", "inch", "yard", "p.m.", "PM",
]
# Unit names are used as regexes verbatim, as in the original ("p.m." has wildcard dots).
_UNIT_RES = [re.compile(rf"{u}(es)?(s)? *(\^[0-9]+)?") for u in _UNITS]
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAYS = re.compile(r"day(s)?")
# The original's "unwrap" loop uses double-escaped names: str.replace removes a literal
# ``\\text`` (TWO backslashes) and the regex, where ``\\`` is one literal backslash, unwraps a
# string that is entirely ``\text{...}`` / ``\mathrm{...}`` / ... (greedy to the last ``}``).
_SURROUND = ["\\\\text", "\\\\mathrm", "\\\\mathcal", "\\\\textbf", "\\\\textit"]
_SURROUND_RES = [re.compile(f"^{s}" + r"\{(?P<text>.+?)\}$") for s in _SURROUND]


# Text-mode macros that hold words the way \text{} does: read them as \text{} so one set of rules
# applies (the original cut ANY \mbox answer down to what precedes it, "" for "\mbox{no}").
_TEXT_ALIASES = re.compile(r"\\(?:mbox|textbf|textit|textrm|textnormal)\s*{")
# A prefix that is not a complete value: what follows its \text{..} is the answer, not a unit
# ("x = \text{yes}", "(1, \text{no})", "a \le \text{b}").
_OPEN_PREFIX = re.compile(r"(?:[=<>,:;(\[{+\-*/^]|\\(?:le|ge|leq|geq|ne|neq|in|to|cdot|times))\s*$")


def _remove_right_units(expr: str) -> str:
    """The original rule: ``5 \\text{ cm}`` -> ``5 `` (one ``\\text{``, after a value: cut from it
    on); else unwrap every ``\\text{..}``. The cut is skipped after an open prefix (see
    ``_OPEN_PREFIX``), where the original made ``x = \\text{yes}`` and ``x = \\text{no}`` equal."""
    expr = _TEXT_ALIASES.sub(r"\\text{", expr)
    if "\\text" in expr:
        splits = _TEXT_SPLIT.split(expr)
        if (len(splits) == 2 and splits[0].strip() not in ("", "(")
                and not _OPEN_PREFIX.search(splits[0])):
            return splits[0]
    if "\\text{" in expr:
        return _TEXT_UNWRAP.sub(r"\1", expr)
    return expr


# "<number> <unit words>" (after \text{} is unwrapped): "12 apples", "5 square units", "3 a.m.".
_NUMBER_WORDS = re.compile(
    r"^\s*(?P<num>[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s*"
    r"(?P<words>[A-Za-z]+(?:\.[A-Za-z]+)*\.?(?:\s+[A-Za-z]+(?:\.[A-Za-z]+)*\.?)*)"
    r"\s*(?:\^\s*\{?\s*\d\s*\}?)?\s*$")
# Words after a number that change its value or meaning, so they are never dropped as a unit:
# multipliers and fractions ("3 halves", "2 thousand"), powers ("5 squared"), comparisons and
# connectives ("12 or more", "3 and 4"), and math names read as a product ("2 pi", "3 sin").
_NOT_UNIT_WORDS = frozenset("""
    half halves third thirds quarter quarters fourth fourths fifth fifths sixth sixths seventh
    sevenths eighth eighths ninth ninths tenth tenths hundred hundreds hundredth hundredths
    thousand thousands thousandth thousandths dozen dozens score million millions billion
    billions trillion trillions squared cubed times plus minus over divided power root roots
    factorial choose mod modulo or and to not no more less fewer greater than least most at
    above below under between only each
    pi sin cos tan sec csc cot log ln exp sqrt arcsin arccos arctan sinh cosh tanh inf infty
""".split())
# Short unit names (two letters) are allowed by name: any other unit word needs three letters,
# so that "2 xy" (a product of variables) keeps its letters.
_SHORT_UNITS = frozenset("cm mm km kg mg ml mL ft yd mi oz lb hr am pm AM PM".split())


def _strip_unit_words(expr: str) -> str:
    """``12 apples`` -> ``12``: drop unit words after a plain number (OMI only knows a fixed unit
    list, so ``\\text{12 apples}`` never matched gold ``12``). Only words made of letters are
    dropped, none of ``_NOT_UNIT_WORDS``, each of 3+ letters or a known short unit."""
    m = _NUMBER_WORDS.match(expr)
    if m is None:
        return expr
    for word in m.group("words").split():
        letters = word.replace(".", "")
        if letters.lower() in _NOT_UNIT_WORDS:
            return expr
        if len(letters) < 3 and letters not in _SHORT_UNITS:
            return expr
    return m.group("num")


def _inject_mixed_fraction(m: re.Match) -> str:
    return f"{m.group(1)} + {m.group(2)}/{m.group(3)}"


def normalize(answer):
    """First pass: ``$123`` -> ``123``; ``12%`` / ``12\\%`` -> ``12``."""
    if isinstance(answer, str):
        if re.match(r"\$\d+(\.\d+)?", answer):  # prefix match, as in the original
            return answer[1:]
        if re.match(r"^\d+(\.\d+)?%$", answer) or re.match(r"^\d+(\.\d+)?\\%$", answer):
            return answer.replace("\\%", "").replace("%", "")
    return answer


def normalize_answer_string(expr: str | None) -> str | None:
    """Second pass (``normalize_answer_string``), in the original order:

    drop ``\\left``/``\\right``; ``\\text{ or }``/``\\text{ and }`` -> ``,``; units after a single
    ``\\text{`` are cut off (else ``\\text{..}`` is unwrapped); ``a \\in S`` -> ``S``; ``\\!``,
    ``\\%``, ``\\$``, ``$``, ``%``, ``^{\\circ}`` removed; `` or ``/`` and `` -> ``,``;
    million/billion/trillion -> ``*10^6/9/12``; unit words deleted (``day(s)`` unless a weekday is
    named); one outer ``{}`` stripped; ``\\sqrt2`` -> ``\\sqrt{2}``; ``\\frac12`` -> ``\\frac{1}{2}``;
    ``- `` -> ``-``; mixed numbers ``7 3/4`` -> ``7+3/4`` and ``7\\frac{3}{4}`` -> ``7 + 3/4``;
    spaces deleted; integer-valued numbers -> ``str(int)``.
    """
    if expr is None:
        return None
    expr = expr.replace("\\left", "").replace("\\right", "")
    expr = _TEXT_AND_OR.sub(",", expr)
    expr = _DOUBLE_COMMA.sub(",", expr)
    expr = _remove_right_units(expr)
    if "\\in " in expr:
        expr = expr.split("\\in ")[1].strip()
    for surround, pat in zip(_SURROUND, _SURROUND_RES):
        expr = expr.replace(surround, "")
        m = pat.search(expr)
        if m is not None:
            expr = m.group("text")
    expr = _strip_unit_words(expr)

    expr = expr.replace(r"\!", "")
    expr = expr.replace("\\%", "%")
    expr = expr.replace("\\$", "$")
    expr = expr.replace("$", "")
    expr = expr.replace("%", "")
    expr = expr.replace("^{\\circ}", "")

    expr = expr.replace(" or ", " , ")
    expr = expr.replace(" and ", " , ")

    expr = expr.replace("million", "*10^6")
    expr = expr.replace("billion", "*10^9")
    expr = expr.replace("trillion", "*10^12")

    for unit_re in _UNIT_RES:
        expr = unit_re.sub("", expr)
    if "day" in expr and not any(d in expr for d in _WEEKDAYS):
        expr = _DAYS.sub("", expr)
    expr = _CIRC_DOUBLE.sub("", expr)

    if len(expr) > 0 and expr[0] == "{" and expr[-1] == "}":
        expr = expr[1:-1]

    expr = _SQRT.sub(r"\\sqrt{\1}", expr)
    expr = _fix_fracs(expr)

    expr = _MINUS_SPACE.sub("-", expr)
    expr = _MIXED_NUMBER.sub(r"\1+\2", expr)
    expr = _MIXED_FRACTION.sub(_inject_mixed_fraction, expr)
    expr = expr.replace(" ", "")

    if _str_is_int(expr):
        expr = str(_str_to_int(expr))
    return expr


def is_digit(s) -> tuple[bool, float | None]:
    """``float()`` after removing ``{,}`` (or else plain ``,``) separators."""
    try:
        text = str(s)
        if "{,}" in text:
            return True, float(text.replace("{,}", ""))
        return True, float(text.replace(",", ""))
    except ValueError:
        return False, None


def _prepare(prediction, reference):
    prediction = normalize_answer_string(normalize(prediction))
    reference = normalize_answer_string(normalize(reference))
    if isinstance(prediction, str) and len(prediction) > 1000:  # original: weird corner cases
        prediction = prediction[:1000]
    return prediction, reference


_UNDECIDED = object()


def _string_and_numeric(prediction, reference, include_percentage: bool, tolerance: float):
    """Steps 0-1 of ``math_equal`` on normalised inputs: True/False, or ``_UNDECIDED``."""
    # 0. string comparison (case-insensitive)
    if isinstance(prediction, str) and isinstance(reference, str):
        if prediction.strip().lower() == reference.strip().lower():
            return True
        if prediction.replace(" ", "") == reference.replace(" ", ""):
            return True
    # 1. numeric comparison. When BOTH sides are numbers the answer is final either way.
    #    Lenient on purpose (include_percentage): "50" matches gold "0.5" and "0.5" matches "50"
    #    because gold/100, gold and gold*100 are all accepted -- this is what GIFT's reward does.
    try:
        ok_p, p = is_digit(prediction)
        ok_r, r = is_digit(reference)
        if ok_p and ok_r:
            candidates = [r / 100, r, r * 100] if include_percentage else [r]
            for item in candidates:
                try:
                    if isclose(item, p, rel_tol=tolerance):
                        return True
                except Exception:
                    continue
            return False
    except Exception:
        pass
    if not prediction and prediction not in [0, False]:
        return False
    return _UNDECIDED


def quick_math_equal(prediction, reference, include_percentage: bool = True,
                     tolerance: float = 1e-4):
    """The sympy-free part of :func:`math_equal`.

    Returns True/False when the string or numeric stage decides, ``None`` when the symbolic stage
    would be needed. Cheap and hang-free for short inputs: used by the pool's parent fast path.
    """
    prediction, reference = _prepare(prediction, reference)
    res = _string_and_numeric(prediction, reference, include_percentage, tolerance)
    return None if res is _UNDECIDED else res


# --------------------------------------------------------------------------------------------
# time limits (main thread only)
# --------------------------------------------------------------------------------------------


class StepTimeout(Exception):
    """Raised by :func:`time_limit` (an Exception, like the original's, so stages swallow it)."""


_events = threading.local()


def timeout_events() -> int:
    """How many :func:`time_limit` alarms fired in this thread (monotone counter)."""
    return getattr(_events, "n", 0)


def _on_alarm(signum, frame):
    _events.n = getattr(_events, "n", 0) + 1
    raise StepTimeout("step timed out")


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Per-step SIGALRM limit. A no-op off the main thread or when ``seconds`` is falsy.

    Installs the handler BEFORE arming the itimer (GIFT's order arms first and leaves a live
    timer behind when ``signal.signal`` raises in a worker thread), and restores the previous
    handler afterwards.
    """
    if not seconds or seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old if old is not None else signal.SIG_DFL)


# --------------------------------------------------------------------------------------------
# symbolic stage
# --------------------------------------------------------------------------------------------

# parse_expr eval()s its input: only plain arithmetic / function-call syntax goes through it, and
# no name that reaches something with side effects (builtins that touch the interpreter, sympy's
# printing/plotting/preview/test runners, eval-based helpers). Unknown names become Symbols.
_SAFE_EXPR = re.compile(r"^[A-Za-z0-9_+\-*/^().,= \t]+$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BLOCKED_NAMES = frozenset({
    "lambda", "import", "exec", "eval", "open", "compile", "globals", "locals", "getattr",
    "setattr", "delattr", "vars", "dir", "input", "breakpoint", "exit", "quit", "help",
    "memoryview", "type", "object", "super", "classmethod", "staticmethod", "property",
    "test", "doctest", "preview", "lambdify", "sympify", "parse_expr", "var", "python",
    "source", "textplot", "dotprint", "pager_print", "interactive_traversal",
})
_BLOCKED_PREFIXES = ("plot", "print", "pprint", "init_", "_")


def _parse_expr(s: str):
    if len(s) > 1000 or not _SAFE_EXPR.match(s):
        raise ValueError("not a plain expression")
    for name in _IDENT.findall(s):
        if name in _BLOCKED_NAMES or name.startswith(_BLOCKED_PREFIXES):
            raise ValueError(f"blocked name {name!r}")
    from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

    return parse_expr(s, transformations=standard_transformations + (convert_xor,))


def _parse_latex(s: str):
    from latex2sympy2_extended import latex2sympy

    return latex2sympy(s)


_SYMPY_CACHE: dict = {}
_SYMPY_CACHE_MAX = 8192
_PARSE_FAILED = object()


def _to_sympy(s: str, timeout: float | None):
    """``parse_expr`` then LaTeX; ``None`` if neither parses. Memoised per process (answers and
    golds repeat across samples); results obtained while an alarm fired are not memoised."""
    hit = _SYMPY_CACHE.get(s)
    if hit is not None:
        return None if hit is _PARSE_FAILED else hit
    alarms = timeout_events()
    result = None
    for parser in (_parse_expr, _parse_latex):
        try:
            with time_limit(timeout):
                result = parser(s)
            break
        except Exception:
            pass
    if timeout_events() == alarms:
        if len(_SYMPY_CACHE) >= _SYMPY_CACHE_MAX:
            _SYMPY_CACHE.clear()
        _SYMPY_CACHE[s] = _PARSE_FAILED if result is None else result
    return result


def _numeric_shortcut(x, y, tolerance: float, timeout: float | None):
    """For two closed-form NUMBERS, decide without ``simplify``: True/False, or None.

    Same verdict as the original two steps: if ``N(x)`` and ``N(y)`` (15 significant digits)
    are within ``tolerance`` the original's ``isclose`` step says True (or its ``simplify`` step
    already did); if they are not, ``simplify(x - y)`` cannot be 0 (simplify preserves value)
    and ``isclose`` is False. Anything unusual (symbols, complex values, errors) -> None.
    """
    try:
        if getattr(x, "free_symbols", None) or getattr(y, "free_symbols", None):
            return None
        if not (getattr(x, "is_number", False) and getattr(y, "is_number", False)):
            return None
        with time_limit(timeout):
            nx, ny = complex(x.evalf(15)), complex(y.evalf(15))
        if nx.imag != 0 or ny.imag != 0:
            return None
        if not (isfinite(nx.real) and isfinite(ny.real)):
            return None
        return isclose(nx.real, ny.real, rel_tol=tolerance)
    except Exception:
        return None


def symbolic_equal(a: str, b: str, tolerance: float = 1e-4, timeout: float | None = 10.0) -> bool:
    """``simplify(a - b) == 0``, else ``isclose(N(a), N(b), rel_tol=tolerance)``.

    Each side is parsed with ``parse_expr`` then LaTeX (``latex2sympy2_extended``); every step
    runs under :func:`time_limit` (main thread only). Two closed-form numbers are compared
    numerically first (:func:`_numeric_shortcut`, same verdict, ~10x cheaper).
    """
    import sympy

    x = _to_sympy(a, timeout)
    y = _to_sympy(b, timeout)
    if x is None or y is None:
        return False
    verdict = _numeric_shortcut(x, y, tolerance, timeout)
    if verdict is not None:
        return verdict
    try:
        with time_limit(timeout):
            if sympy.simplify(x - y) == 0:
                return True
    except Exception:
        pass
    try:
        with time_limit(timeout):
            if isclose(sympy.N(x), sympy.N(y), rel_tol=tolerance):
                return True
    except Exception:
        pass
    return False


# --------------------------------------------------------------------------------------------
# math_equal
# --------------------------------------------------------------------------------------------

_INTERVAL_PATTERNS = [
    (re.compile(r"^Interval\((.*)\)$"), "[{}]"),
    (re.compile(r"^Interval\.Ropen\((.*)\)$"), "[{})"),
    (re.compile(r"^Interval\.Lopen\((.*)\)$"), "({}]"),
    (re.compile(r"^Interval\.open\((.*)\)$"), "({})"),
]


def format_intervals(prediction: str) -> str:
    """sympy ``Interval(a, b)`` / ``.Ropen`` / ``.Lopen`` / ``.open`` -> bracket notation."""
    for pat, fmt in _INTERVAL_PATTERNS:
        m = pat.match(prediction)
        if m:
            return fmt.format(m.group(1))
    return prediction


def math_equal(prediction, reference, include_percentage: bool = True, tolerance: float = 1e-4,
               timeout: float | None = 10.0) -> bool:
    """OpenMathInstruct ``math_equal(pred, ref)`` (``check_antlr_version=False`` behaviour).

    1. ``normalize`` + ``normalize_answer_string`` both sides; truncate pred to 1000 chars.
    2. case-insensitive string equality -> True.
    3. both numeric -> compare with ``{ref/100, ref, ref*100}`` (rel_tol ``tolerance``) and return
       that result either way (lenient percentage rule: "50" == "0.5").
    4. symbolic: sympy intervals to brackets; strip brackets/braces and compare strings;
       element-wise recursion for same-bracket tuples/intervals; comma lists (a length match with
       any element mismatch returns False); ``Point(..)`` vs tuple; ``Matrix`` vs ``pmatrix``;
       finally :func:`symbolic_equal`.
    """
    prediction, reference = _prepare(prediction, reference)
    res = _string_and_numeric(prediction, reference, include_percentage, tolerance)
    if res is not _UNDECIDED:
        return res

    def rec(p, r):
        return math_equal(p, r, include_percentage, tolerance, timeout)

    reference = str(reference).strip()
    prediction = format_intervals(str(prediction).strip())

    pred_str, ref_str = prediction, reference
    if (prediction.startswith("[") and prediction.endswith("]") and not reference.startswith("(")) or (
        prediction.startswith("(") and prediction.endswith(")") and not reference.startswith("[")
    ):
        pred_str = pred_str.strip("[]()")
        ref_str = ref_str.strip("[]()")
    for ch in "{}()":
        ref_str = ref_str.replace(ch, "")
        pred_str = pred_str.replace(ch, "")
    if pred_str == ref_str:
        return True

    # [a, b] vs [c, d] (same brackets): element-wise
    if (prediction and reference and prediction[0] in "([" and prediction[-1] in ")]"
            and prediction[0] == reference[0] and prediction[-1] == reference[-1]):
        pred_parts = prediction[1:-1].split(",")
        ref_parts = reference[1:-1].split(",")
        if len(pred_parts) == len(ref_parts) and all(rec(p, r) for p, r in zip(pred_parts, ref_parts)):
            return True

    # comma-separated lists: same length decides
    if "," in prediction and "," in reference:
        pred_parts = [x.strip() for x in prediction.split(",")]
        ref_parts = [x.strip() for x in reference.split(",")]
        if len(pred_parts) == len(ref_parts):
            return all(rec(p, r) for p, r in zip(pred_parts, ref_parts))

    # Point(a, b) vs (a, b)
    if prediction.startswith("Point") and reference[:1] == "(" and reference[-1:] == ")":
        pred_parts = prediction[prediction.find("(") + 1:-1].split(",")
        ref_parts = reference[1:-1].split(",")
        if len(pred_parts) == len(ref_parts) and all(rec(p, r) for p, r in zip(pred_parts, ref_parts)):
            return True

    # Matrix(..) vs \begin{pmatrix}..  (argument order swapped, as in the original)
    if reference.startswith("\\begin{pmatrix}") and prediction.startswith("Matrix"):
        try:
            with time_limit(timeout):
                pred_matrix = _parse_expr(prediction)
            ref_items = reference.split()[1:-1:2]
            if len(pred_matrix) == len(ref_items) and all(
                    math_equal(r, str(p), include_percentage, tolerance, timeout)
                    for r, p in zip(ref_items, pred_matrix)):
                return True
        except Exception:
            pass

    return symbolic_equal(prediction, reference, tolerance, timeout)
