"""A reference-based rubric judge for the tiny world, behind the :class:`~giftlab.evaluation.judge.Judge` interface.

This is a stand-in that the tiny world can score honestly, not a model judge: the tiny models cannot judge, and
every tiny dialogue (:mod:`giftlab.tinyworld.dialogue`) has an exact reference answer per turn, so the rating
is a fixed function of the judged answer and its reference.
"""

from __future__ import annotations

import threading
from typing import Sequence

from giftlab.evaluation.judge import RATING_MAX, RATING_MIN, JudgeRequest, Judgement, JudgeStats, one_line
from giftlab.tinyworld.problems import last_boxed


def _canonical(value: str) -> str:
    """Compare-ready text: stripped, case-folded; an integer in its plain form (``+012`` -> ``12``)."""
    value = value.strip().casefold()
    try:
        return str(int(value))
    except ValueError:
        return value


class RubricJudge:
    """Rates the judged turn's answer 1-10 against that turn's reference, by a fixed rubric.

    A stand-in that the tiny world can score honestly, not a model judge. Rubric, on the last ``\\boxed{}``
    of the judged answer (``answers[turn - 1]``, extracted as the tiny world's grader does,
    :func:`giftlab.tinyworld.problems.last_boxed`) and the reference ``references[turn - 1]`` (its own last
    ``\\boxed{}`` if it has one, else the whole reference):

    * ``correct`` (default 10): the boxed answer equals the reference (integers compared as integers, words
      case-insensitively: ``Yes`` = ``yes``);
    * ``wrong`` (default 3): a boxed answer that differs from the reference;
    * ``missing`` (default 1): no ``\\boxed{}`` answer to parse (an empty ``\\boxed{}`` included).

    Every category is judged this way (turn 2 on the second answer, against the second reference). A request
    without references raises ValueError. ``Judgement.text`` says why and ends with FastChat's ``[[rating]]``,
    so :func:`giftlab.evaluation.judge.extract_rating` reads the same rating back. Pure: no cache, no calls;
    ``stats.sent`` (= ``stats.attempts``) counts judged requests, the other counters stay 0.
    """

    def __init__(self, *, correct: float = 10.0, wrong: float = 3.0, missing: float = 1.0) -> None:
        for label, value in (("correct", correct), ("wrong", wrong), ("missing", missing)):
            if not RATING_MIN <= value <= RATING_MAX:
                raise ValueError(f"rubric judge: {label} rating {value} is outside "
                                 f"{RATING_MIN:g}-{RATING_MAX:g}")
        if not correct > wrong >= missing:
            raise ValueError(f"rubric judge: need correct > wrong >= missing, got {correct}, {wrong}, {missing}")
        self.ratings = {"correct": float(correct), "wrong": float(wrong), "missing": float(missing)}
        self._stats = JudgeStats()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "rubric"

    @property
    def stats(self) -> JudgeStats:
        with self._lock:
            return JudgeStats(**self._stats.as_dict())

    def judge_one(self, request: JudgeRequest) -> Judgement:
        if request.references is None:
            raise ValueError(f"rubric judge: a {request.category!r} request has no references (the rubric "
                             f"scores against the reference answer of the judged turn)")
        answer = request.answers[request.turn - 1]
        reference = request.references[request.turn - 1]
        gold = last_boxed(reference)
        gold = reference.strip() if gold is None else gold
        got = last_boxed(answer)
        if not got:
            verdict = "missing"
        elif _canonical(got) == _canonical(gold):
            verdict = "correct"
        else:
            verdict = "wrong"
        shown = f"boxed {one_line(got, 80)}" if got else "no boxed answer"
        why = f"{shown}, reference {one_line(gold, 80)}: {'no answer' if verdict == 'missing' else verdict}"
        rating = self.ratings[verdict]
        return Judgement(rating=rating, text=f"turn {request.turn}: {why}. Rating: [[{rating:g}]]")

    def judge(self, requests: Sequence[JudgeRequest]) -> list[Judgement]:
        """One :class:`Judgement` per request, in order; all requests are checked before any is judged."""
        for request in requests:
            if request.references is None:
                self.judge_one(request)   # raises
        out = [self.judge_one(r) for r in requests]
        with self._lock:
            self._stats.sent += len(out)
            self._stats.attempts += len(out)
        return out
