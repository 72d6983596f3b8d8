"""Two-turn evaluation (Table 5): turn 2 is answered after the model's own turn-1 answer, both turns are judged,
and unrated turns are counted, not scored."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from giftlab.data import render_conversation, render_prompt
from giftlab.evaluation.generation import HFGenerator, Sample
from giftlab.evaluation.judge import Judgement
from giftlab.evaluation.mtbench import (
    FASTCHAT_TEMPERATURES,
    answer_dialogues,
    judge_requests,
    load_questions,
    make_judge,
    score_table,
)
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
    assert table["total"] == {"score": 5.5, "n": 12, "unrated": 0, "ci95": [5.5, 5.5], "truncated": 0}
    # answers cut at max_new_tokens are counted (judged as they are)
    cut = [{**d, "finish_reasons": ["length", "stop"] if i < 3 else ["stop", "stop"]} for i, d in enumerate(answered)]
    assert score_table(cut, judgements)["total"]["truncated"] == 3
    assert set(table["categories"]) == {d["category"] for d in DIALOGUES}
    # a malformed or failed judgement is left out of the means and counted
    judgements[1] = Judgement(rating=None, text="I'd say eight-ish")
    judgements[3] = Judgement(rating=None, text="", error="timeout")
    table = score_table(answered, judgements)
    assert table["total"]["unrated"] == 2 and table["total"]["n"] == 10
    assert table["total"]["score"] == pytest.approx((6 * 10 + 4 * 1) / 10)
    with pytest.raises(ValueError, match="judgements for"):
        score_table(answered, judgements[:-1])


def test_each_category_is_sampled_at_its_own_temperature_in_one_batch_per_temperature():
    class Temps(Recorder):
        def __init__(self):
            super().__init__()
            self.calls: list[tuple[float, int]] = []

        def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
            self.calls.append((temperature, len(prompts)))
            return super().generate(prompts, n, temperature, top_p, max_new_tokens, seed)

    rec = Temps()
    temps = {"math": 0.0, "reasoning": 0.3}
    answered = answer_dialogues(rec, build_tokenizer(), DIALOGUES, temperature=0.7, max_new_tokens=8, seed=0,
                                temperatures=temps)
    assert [d["temperature"] for d in answered] == [temps.get(d["category"], 0.7) for d in DIALOGUES]
    assert sorted(rec.calls) == sorted([(0.0, 2), (0.3, 2), (0.7, 2)] * 2)  # two of each category, two turns
    # order is kept: answer k of dialogue i came from the prompt that held dialogue i's question
    for d in answered:
        assert d["turns"][0] in rec.prompts[int(d["answers"][0][1:]) - 1]


def test_the_total_interval_resamples_dialogues():
    answered = [{**d, "answers": ["", ""]} for d in DIALOGUES]
    ratings = [10, 10, 2, 2, 10, 10, 2, 2, 10, 10, 2, 2]
    table = score_table(answered, [Judgement(rating=r, text="") for r in ratings], ci_resamples=2000)
    lo, hi = table["total"]["ci95"]
    assert table["total"]["score"] == 6.0 and 2.0 <= lo < 6.0 < hi <= 10.0


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_questions_load_from_fastchat_and_h4_formats_with_fastchat_references(tmp_path):
    fastchat = [{"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
                {"question_id": 111, "category": "math", "turns": ["1+1?", "Times 3?"], "reference": ["2", "6"]}]
    got = load_questions(_write_jsonl(tmp_path / "question.jsonl", fastchat))
    assert got == fastchat
    # HuggingFaceH4/mt_bench_prompts: prompt / prompt_id, and an empty reference list where there is none
    h4 = [{"prompt": ["Write a poem.", "Shorter."], "prompt_id": 5, "category": "writing", "reference": []},
          {"prompt": ["1+1?", "Times 3?"], "prompt_id": 6, "category": "math", "reference": ["2", "6"]}]
    got = load_questions(_write_jsonl(tmp_path / "h4.jsonl", h4))
    assert got == [{"question_id": 5, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
                   {"question_id": 6, "category": "math", "turns": ["1+1?", "Times 3?"], "reference": ["2", "6"]}]
    pd = pytest.importorskip("pandas")
    pd.DataFrame(h4).to_parquet(tmp_path / "h4.parquet")
    assert load_questions(tmp_path / "h4.parquet") == got
    # FastChat's judge uses reference_answer/gpt-4.jsonl, not the questions' own references
    refs = _write_jsonl(tmp_path / "gpt-4.jsonl",
                        [{"question_id": 111, "model_id": "gpt-4", "choices": [{"index": 0, "turns": ["Two.", "Six."]}]}])
    got = load_questions(tmp_path / "question.jsonl", reference_answers=refs)
    assert got[1]["reference"] == ["Two.", "Six."] and "reference" not in got[0]


MT_BENCH = Path(__file__).parent.parent / "fixtures" / "formats" / "mt_bench"   # 3 of FastChat's rows (README.md)


def test_fastchats_files_load_with_the_gpt4_references_and_h4_ids_match_none(tmp_path):
    refs = MT_BENCH / "reference_answer" / "gpt-4.jsonl"
    got = load_questions(MT_BENCH / "question.jsonl", reference_answers=refs)
    gpt4 = {r["question_id"]: r["choices"][0]["turns"] for r in map(json.loads, refs.read_text().splitlines())}
    assert [(r["question_id"], r["category"]) for r in got] == [(81, "writing"), (111, "math"), (123, "coding")]
    assert got[1]["reference"] == gpt4[111] and got[2]["reference"] == gpt4[123] and "reference" not in got[0]
    # HuggingFaceH4/mt_bench_prompts' rows (its README's transform): prompt_id is a hash of the prompt, so the
    # GPT-4 references match none of them; question 111 must not fall back to its own reference ("Area is 3")
    rows = [json.loads(line) for line in (MT_BENCH / "question.jsonl").read_text().splitlines()][:2]
    h4 = [{"prompt": q["turns"], "category": q["category"], "reference": q.get("reference", []),
           "prompt_id": int(hashlib.sha256("".join(q["turns"]).encode("utf-8")).hexdigest(), 16) % 10 ** 8}
          for q in rows]
    with pytest.raises(ValueError, match="no reference answer for question .* HuggingFaceH4"):
        load_questions(_write_jsonl(tmp_path / "h4.jsonl", h4), reference_answers=refs)


@pytest.mark.parametrize("rows, message", [
    ([{"question_id": 1, "category": "math", "turns": ["a", "b"]}], "has no reference answer"),
    ([{"question_id": 1, "category": "writing", "turns": ["a"]}], "row 1: expected 'turns'"),
    ([{"question_id": 1, "turns": ["a", "b"]}], "row 1: no 'category'"),
    ([{"category": "writing", "turns": ["a", "b"]}], "row 1: no 'question_id'"),
    ([{"question_id": 1, "category": "writing", "turns": ["a", "b"]}] * 2, "appears twice"),
    ([], "empty file"),   # an empty file: the row reader names it
])
def test_a_bad_questions_file_is_one_line_naming_it(tmp_path, rows, message):
    path = _write_jsonl(tmp_path / "q.jsonl", rows)
    with pytest.raises(ValueError, match=message) as info:
        load_questions(path)
    assert "\n" not in str(info.value) and (str(path) in str(info.value))


def test_a_missing_questions_file_says_where_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="question.jsonl or of HuggingFaceH4/mt_bench_prompts"):
        load_questions(tmp_path / "absent.jsonl")


def test_fastchat_temperatures_are_fastchats():
    assert FASTCHAT_TEMPERATURES["writing"] == 0.7 and FASTCHAT_TEMPERATURES["math"] == 0.0
    assert FASTCHAT_TEMPERATURES["stem"] == FASTCHAT_TEMPERATURES["humanities"] == 0.1


def test_make_judge_builds_the_configured_judge(monkeypatch, tmp_path):
    assert isinstance(make_judge({"kind": "rubric", "wrong": 2}), RubricJudge)
    monkeypatch.setenv("MY_JUDGE_KEY", "secret")
    judge = make_judge({"kind": "openai", "model": "gpt-4", "base_url": "http://127.0.0.1:9/v1",
                        "api_key_env": "MY_JUDGE_KEY", "max_in_flight": 3}, cache_path=tmp_path / "c.jsonl")
    assert judge.name == "gpt-4" and judge.max_in_flight == 3 and judge._client.api_key == "secret"
    judge.close()
    with pytest.raises(ValueError, match="mtbench.judge.kind"):
        make_judge({"kind": "human"})
    with pytest.raises(ValueError, match="mtbench.judge.model"):
        make_judge({"kind": "openai"})


def test_total_interval_leaves_out_resamples_of_unrated_dialogues():
    """A resample of dialogues whose turns all went unrated has no total: it is left out of the interval, not scored
    0 (a rating no judge gave)."""
    answered = [{**d, "answers": [f"\\boxed{{{d['reference'][0]}}}", f"\\boxed{{{d['reference'][1]}}}"]}
                for d in DIALOGUES]
    judgements = RubricJudge().judge(judge_requests(answered))
    judgements = judgements[:2] + [Judgement(rating=None, text="", error="timeout")] * (len(judgements) - 2)
    total = score_table(answered, judgements)["total"]
    assert total["score"] == 10 and total["n"] == 2
    assert total["ci95"] == [10.0, 10.0]


def test_an_unset_api_key_env_never_falls_back_to_openai_api_key(monkeypatch, tmp_path):
    """mtbench.judge.api_key_env names the variable holding the judge's key: when it is unset, the key in
    OPENAI_API_KEY must not be sent to the server base_url names."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    spec = {"kind": "openai", "model": "judge", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "MY_JUDGE_KEY"}
    judge = make_judge(spec, cache_path=tmp_path / "c.jsonl")
    assert judge._client.api_key == "EMPTY"     # vllm serve without --api-key accepts any key
    judge.close()
    with pytest.raises(ValueError, match=r"\$MY_JUDGE_KEY is not set"):
        make_judge({**spec, "base_url": None})
    judge = make_judge({**spec, "api_key_env": "OPENAI_API_KEY"})   # the default variable, as configured
    assert judge._client.api_key == "sk-openai-secret"
    judge.close()


def test_the_judge_stops_sending_once_the_job_is_lost():
    from giftlab.evaluation.mtbench import make_judge

    spec = {"kind": "openai", "model": "gpt-4", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "UNSET_KEY_X"}
    with make_judge(spec) as judge:
        assert judge.stop_after_failures == 1  # max_failed_calls 0: the first failure loses the job
    with make_judge({**spec, "max_failed_calls": 3}) as judge:
        assert judge.stop_after_failures == 4
