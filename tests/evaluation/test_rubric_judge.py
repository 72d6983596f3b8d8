"""The tiny world's reference-based rubric judge (giftlab.evaluation.rubric_judge) behind the Judge interface."""

from __future__ import annotations

import pytest

from giftlab.evaluation.judge import Judge, JudgeRequest, JudgeStats, extract_rating
from giftlab.evaluation.rubric_judge import RubricJudge
from giftlab.tinyworld import WorldConfig, render
from giftlab.tinyworld.dialogue import make_dialogues
from giftlab.tinyworld.problems import Problem

Q1 = "Start with 7. Add 5. What is the result?"
Q2 = "Now multiply your answer by 3. What is the result?"


def req(a1: str, a2: str | None = None, turn: int = 1, refs=("12", "36"), category: str = "math") -> JudgeRequest:
    if a2 is None:
        return JudgeRequest(category, (Q1,), (a1,), None if refs is None else refs[:1], turn=1)
    return JudgeRequest(category, (Q1, Q2), (a1, a2), refs, turn=turn)


def test_is_a_judge():
    judge = RubricJudge()
    assert isinstance(judge, Judge) and judge.name == "rubric"
    assert judge.stats == JudgeStats()


def test_correct_wrong_missing():
    judge = RubricJudge()
    correct, wrong, missing, empty = judge.judge([
        req(render(Problem(7, (("add", 5),)), "steps")), req("7+5=13\n\\boxed{13}"), req("The result is 12."),
        req("\\boxed{}")])
    assert (correct.rating, wrong.rating, missing.rating, empty.rating) == (10.0, 3.0, 1.0, 1.0)
    assert "boxed 12, reference 12: correct" in correct.text
    assert "boxed 13, reference 12: wrong" in wrong.text
    assert "no boxed answer, reference 12: no answer" in missing.text
    for j in (correct, wrong, missing):
        assert j.error is None and not j.cached and extract_rating(j.text) == j.rating


def test_last_boxed_counts_and_words():
    judge = RubricJudge()
    changed_mind, yes, word = judge.judge([
        req("\\boxed{13} no wait \\boxed{12}"),
        JudgeRequest("reasoning", (Q1, "Is your answer even?"), ("\\boxed{12}", "\\boxed{Yes}"), ("12", "yes"), turn=2),
        JudgeRequest("reasoning", (Q1, "Is your answer even?"), ("\\boxed{12}", "\\boxed{no}"), ("12", "yes"), turn=2)])
    assert (changed_mind.rating, yes.rating, word.rating) == (10.0, 10.0, 3.0)
    # a boxed reference is read like an answer
    assert judge.judge([req("\\boxed{12}", refs=("\\boxed{12}",))])[0].rating == 10.0


def test_turn2_judged_on_second_answer():
    judge = RubricJudge()
    right1_wrong2, wrong1_right2, right1_missing2 = judge.judge([
        req("\\boxed{12}", "\\boxed{35}", turn=2), req("\\boxed{11}", "\\boxed{36}", turn=2),
        req("\\boxed{12}", "thirty-six", turn=2)])
    assert (right1_wrong2.rating, wrong1_right2.rating, right1_missing2.rating) == (3.0, 10.0, 1.0)
    assert wrong1_right2.text.startswith("turn 2: boxed 36, reference 36: correct")
    # the same conversation judged at turn 1 reads the first answer
    assert judge.judge([req("\\boxed{11}", "\\boxed{36}", turn=1)])[0].rating == 3.0


def test_no_references_is_a_one_line_error():
    judge = RubricJudge()
    with pytest.raises(ValueError, match="no references") as err:
        judge.judge([req("\\boxed{12}"), req("\\boxed{12}", refs=None)])
    assert "\n" not in str(err.value)
    assert judge.stats.sent == 0   # nothing judged when a request is refused


def test_stats_count_judged_requests():
    judge = RubricJudge()
    judge.judge([req("\\boxed{12}"), req("nothing")])
    judge.judge([req("\\boxed{1}", "\\boxed{36}", turn=2)])
    judge.judge([])
    assert judge.stats.as_dict() == {"sent": 3, "attempts": 3, "retries": 0, "cache_hits": 0, "failures": 0,
                                     "malformed": 0}
    stats = judge.stats
    stats.sent = 99   # a copy
    assert judge.stats.sent == 3


def test_gold_answers_score_ten_on_tiny_dialogues():
    judge = RubricJudge()
    requests = []
    for d in make_dialogues(30, 4, **WorldConfig().problem_kwargs()):
        answers = tuple(f"\\boxed{{{r}}}" for r in d["reference"])
        for turn in (1, 2):
            requests.append(JudgeRequest(d["category"], d["turns"], answers, d["reference"], turn=turn))
    assert {j.rating for j in judge.judge(requests)} == {10.0}


def test_rating_options_validated():
    assert RubricJudge(correct=9, wrong=2, missing=2).judge([req("x")])[0].rating == 2.0
    for bad in ({"correct": 11}, {"missing": 0}, {"wrong": 1, "missing": 2}, {"correct": 3, "wrong": 3}):
        with pytest.raises(ValueError, match="rubric judge"):
            RubricJudge(**bad)
