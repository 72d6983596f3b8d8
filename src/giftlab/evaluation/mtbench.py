"""MT-Bench-style two-turn evaluation (Table 5): answer each dialogue's two turns, judge both, score by category.

Dialogues are FastChat ``question.jsonl`` records ``{question_id, category, turns: [q1, q2], reference?: [r1, r2]}``
(MT-Bench's 80 questions, or the tiny world's analogue, :mod:`giftlab.tinyworld.dialogue`).

* :func:`answer_dialogues`: turn 1 is answered from ``q1``; turn 2 sees the whole conversation, ``q1``, the model's
  own answer to it, then ``q2`` (as MT-Bench generates, one sample per turn), with any generation backend.
* :func:`judge_requests`: one :class:`~giftlab.evaluation.judge.JudgeRequest` per turn (turn 2 judged on the whole
  conversation), references where the dialogue has them.
* :func:`score_table`: mean rating per category and over all judged turns (MT-Bench's "total"); a turn without a
  rating (a malformed reply, a failed call) is counted in ``unrated`` and left out of the means, never scored 0.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from giftlab.data import render_conversation
from giftlab.evaluation.judge import Judgement, JudgeRequest


def answer_dialogues(generator, tokenizer, dialogues: Sequence[Mapping[str, Any]], *, temperature: float,
                     max_new_tokens: int, seed: int, top_p: float = 1.0, chat_template: str | bool = "auto"
                     ) -> list[dict[str, Any]]:
    """Each dialogue with the model's ``answers`` to both turns (and per turn ``num_tokens``, ``finish_reasons``)."""
    for d in dialogues:
        if len(d.get("turns") or []) != 2:
            raise ValueError(f"dialogue {d.get('question_id')}: expected 2 turns, got {len(d.get('turns') or [])}")
    sample = dict(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    first = [s[0] for s in generator.generate(
        [render_conversation(tokenizer, [d["turns"][0]], chat_template) for d in dialogues], **sample)]
    second = [s[0] for s in generator.generate(
        [render_conversation(tokenizer, [d["turns"][0], a.text, d["turns"][1]], chat_template)
         for d, a in zip(dialogues, first)], **sample)]
    return [{**dict(d), "answers": [a.text, b.text], "num_tokens": [a.num_tokens, b.num_tokens],
             "finish_reasons": [a.finish_reason, b.finish_reason]} for d, a, b in zip(dialogues, first, second)]


def judge_requests(answered: Iterable[Mapping[str, Any]]) -> list[JudgeRequest]:
    """Two requests per answered dialogue, turn 1 then turn 2."""
    requests = []
    for d in answered:
        references = tuple(d["reference"]) if d.get("reference") else None
        for turn in (1, 2):
            requests.append(JudgeRequest(category=d["category"], questions=tuple(d["turns"][:turn]),
                                         answers=tuple(d["answers"][:turn]),
                                         references=references[:turn] if references else None, turn=turn))
    return requests


def score_table(answered: Sequence[Mapping[str, Any]], judgements: Sequence[Judgement]) -> dict[str, Any]:
    """``{"categories": {cat: {"score", "n", "unrated"}}, "total": {...}, "turns": {1: {...}, 2: {...}}}`` from
    the judgements of :func:`judge_requests` (in its order): mean ratings over rated turns."""
    if len(judgements) != 2 * len(answered):
        raise ValueError(f"{len(judgements)} judgements for {len(answered)} dialogues (2 turns each)")
    groups: dict[str, list[float | None]] = {}
    turns: dict[int, list[float | None]] = {1: [], 2: []}
    for i, d in enumerate(answered):
        for turn in (1, 2):
            rating = judgements[2 * i + turn - 1].rating
            groups.setdefault(d["category"], []).append(rating)
            turns[turn].append(rating)

    def cell(ratings: list[float | None]) -> dict[str, Any]:
        rated = [r for r in ratings if r is not None]
        return {"score": sum(rated) / len(rated) if rated else None, "n": len(rated),
                "unrated": len(ratings) - len(rated)}

    everything = [r for ratings in groups.values() for r in ratings]
    return {"categories": {c: cell(r) for c, r in sorted(groups.items())}, "total": cell(everything),
            "turns": {t: cell(r) for t, r in turns.items()}}
