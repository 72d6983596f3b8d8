"""A tiny two-turn analogue of MT-Bench in the tiny world (Table 5's tiny default).

Each dialogue is one line of FastChat's ``question.jsonl``::

    {"question_id": 1, "category": "math",
     "turns": ["Start with 7. Add 5. Multiply by 2. What is the result?",
               "Now multiply your answer by 3. What is the result?"],
     "reference": ["24", "72"]}

Turn 1 is a tiny-world chain problem (drawn with the world's own sampler, ops and ranges); turn 2 is a
follow-up whose exact answer the world computes. Categories (``CATEGORIES``, assigned round-robin so each
gets an equal share, as MT-Bench's 10 per category):

* ``math``: turn 2 applies one more op (of the world's ops, the result staying in ``[0, max_value]``) to
  turn 1's answer: it needs the answer;
* ``reasoning``: turn 2 asks about turn 1's answer -- whether it is even (``yes`` / ``no``), or which of it
  and another number is larger (that number): it needs the answer;
* ``extraction``: turn 2 asks for a number stated in turn 1's question (the starting number, or the operand
  of one operation): it needs the question, not the answer.

Unlike MT-Bench (references only for ``math`` / ``reasoning`` / ``coding``), every dialogue has references:
``reference[i]`` is the exact gold final answer of turn ``i + 1`` (what a solution should put in
``\\boxed{}``), so a reference-based rubric judge (:class:`giftlab.evaluation.rubric_judge.RubricJudge`) can
score every category honestly.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Iterable, Sequence

from giftlab.io import write_text_atomic
from giftlab.tinyworld.problems import Problem, apply_op, sample_problem, sample_problems

CATEGORIES = ("math", "reasoning", "extraction")
STREAM = "tiny_mt_bench"

_FOLLOW_UP = {"add": "Now add {n} to your answer.", "sub": "Now subtract {n} from your answer.",
              "mul": "Now multiply your answer by {n}.", "div": "Now divide your answer by {n}."}
_OP_NAME = {"add": "add", "sub": "subtract", "mul": "multiply by", "div": "divide by"}
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_COMPARE_SPREAD = 10   # the other number of a comparison is within this distance of turn 1's answer


def _ordinal(k: int) -> str:
    return _ORDINALS[k - 1] if 1 <= k <= len(_ORDINALS) else f"number {k}"


def _math_turn(rng: random.Random, problem: Problem, problem_kwargs: dict[str, Any]) -> tuple[str, str]:
    """One more op on turn 1's answer, chosen by the world's sampler (feasible, within ``max_value``)."""
    kwargs = {k: v for k, v in problem_kwargs.items() if k != "start_range"}
    a1 = problem.answer
    step = sample_problem(rng, 1, start_range=(a1, a1), **kwargs)
    (op, n), = step.steps
    return _FOLLOW_UP[op].format(n=n) + " What is the result?", str(apply_op(op, a1, n))


def _reasoning_turn(rng: random.Random, problem: Problem, max_value: int) -> tuple[str, str]:
    a1 = problem.answer
    others = [v for v in range(max(0, a1 - _COMPARE_SPREAD), min(max_value, a1 + _COMPARE_SPREAD) + 1)
              if v != a1]
    if others and rng.random() < 0.5:
        other = rng.choice(others)
        return (f"Which is larger: your answer or {other}? Give the larger number.", str(max(a1, other)))
    return "Is your answer an even number? Answer yes or no.", "yes" if a1 % 2 == 0 else "no"


def _extraction_turn(rng: random.Random, problem: Problem) -> tuple[str, str]:
    k = rng.randint(0, len(problem.steps))
    if k == 0:
        return "What number did the problem start with?", str(problem.start)
    op, n = problem.steps[k - 1]
    return (f"In the problem, the {_ordinal(k)} operation says to {_OP_NAME[op]} a number. "
            f"What is that number?", str(n))


def make_dialogue(rng: random.Random, problem: Problem, category: str, question_id: int,
                  **problem_kwargs: Any) -> dict[str, Any]:
    """One ``question.jsonl`` record: ``problem`` as turn 1, a ``category`` follow-up as turn 2."""
    if category == "math":
        q2, a2 = _math_turn(rng, problem, problem_kwargs)
    elif category == "reasoning":
        q2, a2 = _reasoning_turn(rng, problem, int(problem_kwargs.get("max_value", 99)))
    elif category == "extraction":
        q2, a2 = _extraction_turn(rng, problem)
    else:
        raise ValueError(f"unknown dialogue category {category!r} (choose from {', '.join(CATEGORIES)})")
    return {"question_id": int(question_id), "category": category, "turns": [problem.question, q2],
            "reference": [str(problem.answer), a2]}


def make_dialogues(n: int, seed: int, *, steps_range: Sequence[int] = (1, 3),
                   categories: Sequence[str] = CATEGORIES, exclude: Iterable[str] = (),
                   first_id: int = 1, **problem_kwargs: Any) -> list[dict[str, Any]]:
    """``n`` two-turn dialogues, deterministic in ``seed``; ``question_id`` s from ``first_id``.

    ``problem_kwargs``: the world's ``sample_problem`` keywords (``WorldConfig.problem_kwargs()``:
    ``start_range``, ``operand_range``, ``mul_range``, ``ops``, ``max_value``); the turn-1 problems are
    distinct, with a step count in ``steps_range``, none in ``exclude`` (questions or ids). Categories go
    round-robin in the order given.
    """
    if n < 0:
        raise ValueError(f"make_dialogues: n must be >= 0, got {n}")
    if not categories:
        raise ValueError("make_dialogues: no categories")
    for c in categories:
        if c not in CATEGORIES:
            raise ValueError(f"unknown dialogue category {c!r} (choose from {', '.join(CATEGORIES)})")
    rng = random.Random(f"{seed}:{STREAM}")   # str seed: stable across runs and PYTHONHASHSEED
    problems = sample_problems(rng, n, steps_range, exclude=exclude, **problem_kwargs)
    return [make_dialogue(rng, p, categories[i % len(categories)], first_id + i, **problem_kwargs)
            for i, p in enumerate(problems)]


def dumps_dialogues(dialogues: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(d) + "\n" for d in dialogues)


def write_dialogues(path: str | os.PathLike[str], dialogues: Iterable[dict[str, Any]]) -> Path:
    """Write ``dialogues`` as FastChat's ``question.jsonl`` (one JSON object a line), atomically."""
    return write_text_atomic(path, dumps_dialogues(dialogues))


def read_dialogues(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``question.jsonl`` file (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
