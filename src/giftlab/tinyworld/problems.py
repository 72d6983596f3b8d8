"""Multi-step arithmetic chain problems and the solution styles that write them out.

A problem reads ``Start with 7. Add 5. Multiply by 2. Subtract 3. What is the result?``; every
intermediate value stays in ``[0, max_value]``. Its id is a hash of the question, so the same
question has the same id wherever it appears (which makes exclusion and disjointness checks simple).

Solution styles (``STYLES``) differ in how much of the computation they write down. A tiny model
can follow the step-by-step styles but not the shortcuts, which it has to compute "in its head"::

    steps       7+5=12 / 12*2=24 / 24-3=21 / \\boxed{21}          reliable (one op per line)
    verbose     Start with 7. / Add 5: 12. / ... / The result is \\boxed{21}.   reliable, wordier
    chain       7 -> 12 -> 24 -> 21 / \\boxed{21}                  partial (operands implicit)
    expression  (7+5)*2-3=21 / \\boxed{21}                         shortcut (one shot)
    answer      \\boxed{21}                                        shortcut (answer only)

``render(problem, style, slip=...)`` can inject one arithmetic slip (the value after one step is off
by a small amount) that propagates to the end, as in a careless derivation.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

TOPIC = "Mathematics -> Arithmetic -> Chains"
OPS = ("add", "sub", "mul", "div")
STYLES = ("steps", "verbose", "chain", "expression", "answer")
RELIABLE_STYLES = ("steps", "verbose")
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_PHRASE = {"add": "Add {n}.", "sub": "Subtract {n}.", "mul": "Multiply by {n}.", "div": "Divide by {n}."}
_SLIPS = (-10, -3, -2, -1, 1, 2, 3, 10)


def problem_id(question: str) -> str:
    """The stable id of a question: ``tw-`` + 12 hex digits of its sha1."""
    return "tw-" + hashlib.sha1(question.encode()).hexdigest()[:12]


def apply_op(op: str, value: int, n: int) -> int:
    if op == "add":
        return value + n
    if op == "sub":
        return value - n
    if op == "mul":
        return value * n
    if op == "div":
        return value // n
    raise ValueError(f"unknown op {op!r} (choose from {', '.join(OPS)})")


@dataclass(frozen=True)
class Problem:
    start: int
    steps: tuple[tuple[str, int], ...]   # (op, operand)

    @property
    def values(self) -> list[int]:
        """The running value after each step (without the start)."""
        out, v = [], self.start
        for op, n in self.steps:
            v = apply_op(op, v, n)
            out.append(v)
        return out

    @property
    def answer(self) -> int:
        return self.values[-1] if self.steps else self.start

    @property
    def question(self) -> str:
        parts = [f"Start with {self.start}."] + [_PHRASE[op].format(n=n) for op, n in self.steps]
        return " ".join(parts) + " What is the result?"

    @property
    def id(self) -> str:
        return problem_id(self.question)


def sample_problem(rng: random.Random, n_steps: int, *, start_range: Sequence[int] = (1, 20),
                   operand_range: Sequence[int] = (1, 9), mul_range: Sequence[int] = (2, 3),
                   ops: Sequence[str] = ("add", "sub", "mul"), max_value: int = 99) -> Problem:
    """One random chain of ``n_steps`` ops; each step picks a feasible op family, then an operand.

    ``div`` only divides exactly (by an operand from ``mul_range``). A step with no feasible op
    (cannot happen with ``add``/``sub`` enabled and ``max_value`` >= 2·operand) raises ValueError.
    """
    for op in ops:
        if op not in OPS:
            raise ValueError(f"world.ops: unknown op {op!r} (choose from {', '.join(OPS)})")
    v = rng.randint(start_range[0], start_range[1])
    start, steps = v, []
    for _ in range(n_steps):
        choices = {}
        for op in ops:
            lo, hi = (mul_range if op in ("mul", "div") else operand_range)
            ok = [n for n in range(lo, hi + 1)
                  if (op != "div" or v % n == 0) and 0 <= apply_op(op, v, n) <= max_value]
            if ok:
                choices[op] = ok
        if not choices:
            raise ValueError(f"no feasible op from value {v}; widen world ranges")
        op = rng.choice(sorted(choices, key=ops.index))
        n = rng.choice(choices[op])
        steps.append((op, n))
        v = apply_op(op, v, n)
    return Problem(start, tuple(steps))


# --------------------------------------------------------------------------------------- styles

def _values_with_slip(problem: Problem, slip: tuple[int, int] | None) -> list[int]:
    """Running values, where ``slip=(step_index, delta)`` perturbs one step's result (propagates)."""
    out, v = [], problem.start
    for i, (op, n) in enumerate(problem.steps):
        v = apply_op(op, v, n)
        if slip is not None and i == slip[0]:
            v = v + slip[1]
        out.append(v)
    return out


def render(problem: Problem, style: str, slip: tuple[int, int] | None = None) -> str:
    """The worked solution of ``problem`` in ``style``, ending with ``\\boxed{answer}``.

    With ``slip=(i, delta)`` the value after step ``i`` is off by ``delta`` and every later line
    computes correctly from the wrong value, so the boxed answer is wrong.
    """
    vals = _values_with_slip(problem, slip)
    ans = vals[-1] if vals else problem.start
    prev = [problem.start] + vals[:-1]
    if style == "steps":
        lines = [f"{a}{_SYMBOL[op]}{n}={b}" for a, (op, n), b in zip(prev, problem.steps, vals)]
        return "\n".join(lines + [f"\\boxed{{{ans}}}"])
    if style == "verbose":
        lines = [f"Start with {problem.start}."]
        lines += [f"{_PHRASE[op].format(n=n)[:-1]}: {a}{_SYMBOL[op]}{n}={b}."
                  for a, (op, n), b in zip(prev, problem.steps, vals)]
        return "\n".join(lines + [f"The result is \\boxed{{{ans}}}."])
    if style == "chain":
        return " -> ".join(str(x) for x in [problem.start] + vals) + f"\n\\boxed{{{ans}}}"
    if style == "expression":
        expr = str(problem.start)
        for i, (op, n) in enumerate(problem.steps):
            if op in ("mul", "div") and i > 0:
                expr = f"({expr})"
            expr = f"{expr}{_SYMBOL[op]}{n}"
        return f"{expr}={ans}\n\\boxed{{{ans}}}"
    if style == "answer":
        return f"\\boxed{{{ans}}}"
    raise ValueError(f"unknown style {style!r} (choose from {', '.join(STYLES)})")


def random_slip(rng: random.Random, problem: Problem) -> tuple[int, int]:
    """A slip at a random step whose perturbed value stays non-negative."""
    i = rng.randrange(len(problem.steps))
    v = problem.values[i]
    delta = rng.choice([d for d in _SLIPS if v + d >= 0])
    return i, delta


_STYLE_PATTERNS = (
    ("verbose", re.compile(r"^Start with \d+\.")),
    ("steps", re.compile(r"^\d+[-+*/]\d+=-?\d+\n")),
    ("chain", re.compile(r"^\d+( -> -?\d+)+")),
    ("expression", re.compile(r"^[(\d][-+*/()\d]*=-?\d+")),
    ("answer", re.compile(r"^\\boxed\{")),
)


def classify_style(text: str) -> str:
    """Which style a (model-written) solution uses, from its first line; ``other`` if none."""
    text = text.lstrip()
    if re.match(r"^\d+[-+*/]\d+=-?\d+\s*(\\boxed|$)", text):
        # one op, one line: a 1-step `steps` solution and a 1-step expression look the same
        return "steps"
    for name, pat in _STYLE_PATTERNS:
        if pat.match(text):
            return name
    return "other"


_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (no nested braces), stripped."""
    found = _BOXED.findall(text)
    return found[-1].strip() if found else None


def is_correct(text: str, gold: str) -> bool:
    """The tiny world's grader: the last boxed content equals the gold integer string."""
    got = last_boxed(text)
    return got is not None and got == str(gold).strip()


# ------------------------------------------------------------------------------ mixtures

def normalise_mix(mix: Mapping[str, float], name: str) -> tuple[list[str], list[float]]:
    """Validate a ``{style: weight}`` mix; return its styles and weights summing to 1."""
    if not mix:
        raise ValueError(f"world.{name}: empty style mix")
    for style, w in mix.items():
        if style not in STYLES:
            raise ValueError(f"world.{name}: unknown style {style!r} (choose from {', '.join(STYLES)})")
        if not isinstance(w, (int, float)) or w < 0:
            raise ValueError(f"world.{name}.{style}: weight must be a non-negative number")
    total = float(sum(mix.values()))
    if total <= 0:
        raise ValueError(f"world.{name}: weights sum to 0")
    styles = [s for s in STYLES if s in mix]
    return styles, [mix[s] / total for s in styles]


def sample_problems(rng: random.Random, n: int, steps_range: Sequence[int], *,
                    exclude: Iterable[str] = (), stratify: bool = False,
                    require: Callable[[Problem], bool] | None = None,
                    max_tries: int = 200, **problem_kw) -> list[Problem]:
    """``n`` distinct problems with a step count in ``steps_range`` (inclusive), none excluded.

    ``exclude`` holds questions or ids; ``require``, if given, must accept every problem. With ``stratify`` every step count gets an equal share
    (the remainder goes to the larger counts); otherwise the step count is uniform per draw.
    Raises ValueError if the space runs out (too few distinct problems for the request).
    """
    lo, hi = int(steps_range[0]), int(steps_range[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"bad steps range {list(steps_range)}: need 1 <= min <= max")
    banned = set(exclude)
    seen: set[str] = set()
    out: list[Problem] = []

    def take(k: int, pick_steps) -> None:
        misses = 0
        got = 0
        while got < k:
            p = sample_problem(rng, pick_steps(), **problem_kw)
            q = p.question
            if q in seen or q in banned or p.id in banned or (require is not None and not require(p)):
                misses += 1
                if misses > max_tries * max(k, 1):
                    raise ValueError(f"could only find {got} of {k} distinct problems with steps "
                                     f"{lo}-{hi}; reduce the count or widen world ranges")
                continue
            seen.add(q)
            out.append(p)
            got += 1

    if stratify:
        counts = [n // (hi - lo + 1)] * (hi - lo + 1)
        for i in range(n - sum(counts)):
            counts[-1 - i] += 1
        for s, k in zip(range(lo, hi + 1), counts):
            take(k, lambda s=s: s)
    else:
        take(n, lambda: rng.randint(lo, hi))
    return out
