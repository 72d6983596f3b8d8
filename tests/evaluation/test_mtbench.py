"""Two-turn evaluation (Table 5): turn 2 is answered after the model's own turn-1 answer, both turns are judged,
and unrated turns are counted, not scored."""

from __future__ import annotations

import pytest

from giftlab.data import render_conversation, render_prompt
from giftlab.evaluation.generation import HFGenerator, Sample
from giftlab.evaluation.judge import Judgement
from giftlab.evaluation.mtbench import answer_dialogues, judge_requests, score_table
from giftlab.evaluation.rubric_judge import RubricJudge
from giftlab.tinyworld.dialogue import make_dialogues
from giftlab.tinyworld.tokenizer import build_tokenizer

DIALOGUES = make_dialogues(6, seed=0)


class Recorder:
    """A generator that answers ``A<k>`` and remembers the prompts it was given."""

    backend = "recorder"

    def __init__(self):
        self.prompts: list[str] = []

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        out = []
        for p in prompts:
            self.prompts.append(p)
            out.append([Sample(f"A{len(self.prompts)}", 2, "stop", seed)] * n)
        return out


def test_turn_two_sees_turn_one_and_the_models_own_answer():
    tok = build_tokenizer()
    rec = Recorder()
    answered = answer_dialogues(rec, tok, DIALOGUES, temperature=0.0, max_new_tokens=8, seed=0)
    n = len(DIALOGUES)
    assert [d["answers"][0] for d in answered] == [f"A{i + 1}" for i in range(n)]
    for i, d in enumerate(DIALOGUES):
        second = rec.prompts[n + i]
        q1, q2 = d["turns"]
        assert second == render_conversation(tok, [q1, f"A{i + 1}", q2])
        assert second.index(q1) < second.index(f"A{i + 1}") < second.index(q2)
        assert rec.prompts[i] == render_prompt(tok, q1)  # turn 1: the prompt every other benchmark gets


def test_render_conversation_without_a_template_and_with_a_bad_turn_count():
    class Plain:
        chat_template = None

    assert render_conversation(Plain(), ["q1", "a1", "q2"]) == "q1\n\na1\n\nq2"
    with pytest.raises(ValueError, match="ends with a user turn"):
        render_conversation(Plain(), ["q1", "a1"])


def test_a_tiny_model_answers_both_turns_reproducibly(base_dir):
    tok = build_tokenizer()
    gen = HFGenerator(str(base_dir), batch_size=8)
    first = answer_dialogues(gen, tok, DIALOGUES[:3], temperature=0.6, max_new_tokens=6, seed=3)
    again = answer_dialogues(gen, tok, DIALOGUES[:3], temperature=0.6, max_new_tokens=6, seed=3)
    assert first == again
    for d in first:
        assert len(d["answers"]) == 2 and all(0 < t <= 6 for t in d["num_tokens"])
        assert set(d["finish_reasons"]) <= {"stop", "length"}


def test_scores_by_category_from_the_rubric_judge_and_unrated_turns_counted():
    answered = [{**d, "answers": [f"\\boxed{{{d['reference'][0]}}}", "no idea"]} for d in DIALOGUES]
    requests = judge_requests(answered)
    assert [(r.turn, len(r.questions), len(r.answers)) for r in requests[:2]] == [(1, 1, 1), (2, 2, 2)]
    judgements = RubricJudge().judge(requests)
    table = score_table(answered, judgements)
    # turn 1 right (10), turn 2 without a boxed answer (1): every category and the total average 5.5
    assert table["turns"][1]["score"] == 10 and table["turns"][2]["score"] == 1
    assert table["total"] == {"score": 5.5, "n": 12, "unrated": 0}
    assert set(table["categories"]) == {d["category"] for d in DIALOGUES}
    # a malformed or failed judgement is left out of the means and counted
    judgements[1] = Judgement(rating=None, text="I'd say eight-ish")
    judgements[3] = Judgement(rating=None, text="", error="timeout")
    table = score_table(answered, judgements)
    assert table["total"]["unrated"] == 2 and table["total"]["n"] == 10
    assert table["total"]["score"] == pytest.approx((6 * 10 + 4 * 1) / 10)
    with pytest.raises(ValueError, match="judgements for"):
        score_table(answered, judgements[:-1])
