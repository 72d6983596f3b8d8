"""The tiny two-turn MT-Bench analogue (giftlab.tinyworld.dialogue): determinism, FastChat's question.jsonl
format, and references recomputed independently from the question text."""

from __future__ import annotations

import json
import re

import pytest

from giftlab.tinyworld import WorldConfig
from giftlab.tinyworld.dialogue import CATEGORIES, make_dialogues, read_dialogues, write_dialogues

KW = WorldConfig().problem_kwargs()
_STEP = {"Add": lambda v, n: v + n, "Subtract": lambda v, n: v - n,
         "Multiply by": lambda v, n: v * n, "Divide by": lambda v, n: v // n}


def _parse(question: str) -> tuple[int, list[tuple[str, int]]]:
    m = re.fullmatch(r"Start with (\d+)\.((?: (?:Add|Subtract|Multiply by|Divide by) \d+\.)+) What is the result\?",
                     question)
    assert m, question
    steps = [(op, int(n)) for op, n in re.findall(r"(Add|Subtract|Multiply by|Divide by) (\d+)\.", m.group(2))]
    return int(m.group(1)), steps


def _solve(question: str) -> int:
    v, steps = _parse(question)
    for op, n in steps:
        v = _STEP[op](v, n)
    return v


def _solve_turn2(q1: str, q2: str) -> str:
    a1 = _solve(q1)
    start, steps = _parse(q1)
    if m := re.fullmatch(r"Now (add|subtract|multiply|divide) (?:(\d+) to |(\d+) from )?your answer"
                         r"(?: by (\d+))?\. What is the result\?", q2):
        n = int(next(g for g in m.groups()[1:] if g))
        return str({"add": a1 + n, "subtract": a1 - n, "multiply": a1 * n, "divide": a1 // n}[m.group(1)])
    if q2 == "Is your answer an even number? Answer yes or no.":
        return "yes" if a1 % 2 == 0 else "no"
    if m := re.fullmatch(r"Which is larger: your answer or (\d+)\? Give the larger number\.", q2):
        return str(max(a1, int(m.group(1))))
    if q2 == "What number did the problem start with?":
        return str(start)
    m = re.fullmatch(r"In the problem, the (\w+) operation says to (add|subtract|multiply by|divide by) a number\. "
                     r"What is that number\?", q2)
    assert m, q2
    k = ["first", "second", "third", "fourth", "fifth"].index(m.group(1))
    op, n = steps[k]
    assert op.lower() == m.group(2)
    return str(n)


def test_deterministic_and_seed_dependent():
    assert make_dialogues(30, 5, **KW) == make_dialogues(30, 5, **KW)
    assert make_dialogues(30, 5, **KW) != make_dialogues(30, 6, **KW)


def test_question_jsonl_format(tmp_path):
    ds = make_dialogues(24, 1, first_id=81, **KW)
    assert [d["question_id"] for d in ds] == list(range(81, 105))
    assert [d["category"] for d in ds] == [CATEGORIES[i % len(CATEGORIES)] for i in range(24)]
    assert len({d["turns"][0] for d in ds}) == 24   # distinct turn-1 problems
    for d in ds:
        assert set(d) == {"question_id", "category", "turns", "reference"}
        assert isinstance(d["question_id"], int)
        assert len(d["turns"]) == 2 and len(d["reference"]) == 2
        assert all(isinstance(x, str) and x for x in d["turns"] + d["reference"])
    path = write_dialogues(tmp_path / "sub" / "question.jsonl", ds)
    lines = path.read_text().splitlines()
    assert len(lines) == 24 and json.loads(lines[0]) == ds[0]
    assert read_dialogues(path) == ds


def test_references_recomputed():
    ds = make_dialogues(300, 3, **KW)
    seen2 = set()
    for d in ds:
        q1, q2 = d["turns"]
        assert d["reference"][0] == str(_solve(q1))
        assert d["reference"][1] == _solve_turn2(q1, q2), d
        seen2.add(q2.split()[0] + q2.split()[1])
        if d["category"] == "math":
            assert q2.startswith("Now ") and 0 <= int(d["reference"][1]) <= KW["max_value"]
        elif d["category"] == "reasoning":
            assert "your answer" in q2
        else:
            assert "your answer" not in q2
    # every kind of follow-up occurs (math: add/subtract/multiply; reasoning: even/larger; extraction: start/operand)
    assert {"Nowadd", "Nowsubtract", "Nowmultiply", "Isyour", "Whichis", "Whatnumber", "Inthe"} <= seen2


def test_turn2_depends_on_turn1_answer():
    """math and reasoning follow-ups are stated relative to the first answer and computed from it."""
    for d in make_dialogues(120, 9, **KW):
        a1 = int(d["reference"][0])
        q2, r2 = d["turns"][1], d["reference"][1]
        if d["category"] == "math":
            n = int(re.search(r"\d+", q2).group())
            op = q2.split()[1]
            assert r2 == str({"add": a1 + n, "subtract": a1 - n, "multiply": a1 * n, "divide": a1 // n}[op])
        elif d["category"] == "reasoning" and q2.startswith("Is"):
            assert r2 == ("yes" if a1 % 2 == 0 else "no")
        elif d["category"] == "reasoning":
            other = int(re.search(r"\d+", q2).group())
            assert other != a1 and r2 == str(max(a1, other))


def test_world_ranges_respected_and_options():
    kw = dict(KW, ops=("add", "sub", "mul", "div"), max_value=50, start_range=[1, 10])
    ds = make_dialogues(60, 2, steps_range=(2, 2), categories=("math",), **kw)
    for d in ds:
        start, steps = _parse(d["turns"][0])
        assert 1 <= start <= 10 and len(steps) == 2
        assert d["category"] == "math" and 0 <= int(d["reference"][1]) <= 50
    assert any("divide" in d["turns"][1] for d in ds)
    excluded = make_dialogues(10, 2, **KW)
    again = make_dialogues(10, 2, exclude=[d["turns"][0] for d in excluded], **KW)
    assert not {d["turns"][0] for d in excluded} & {d["turns"][0] for d in again}
    with pytest.raises(ValueError, match="unknown dialogue category"):
        make_dialogues(3, 0, categories=("coding",), **KW)
