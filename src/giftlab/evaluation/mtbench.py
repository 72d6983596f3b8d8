"""MT-Bench-style two-turn evaluation (Table 5): answer each dialogue's two turns, judge both, score by category.

Dialogues are FastChat ``question.jsonl`` records ``{question_id, category, turns: [q1, q2], reference?: [r1, r2]}``
(MT-Bench's 80 questions, or the tiny world's analogue, :mod:`giftlab.tinyworld.dialogue`).

* :func:`load_questions`: a local copy of the questions in either distributed format (FastChat's
  ``question.jsonl``; ``HuggingFaceH4/mt_bench_prompts``: ``prompt`` / ``reference`` / ``category`` /
  ``prompt_id``, as JSON Lines, parquet or a downloaded dataset folder), with FastChat's reference answers
  (``reference_answer/gpt-4.jsonl``) when given, checked in one line per fault.
* :func:`temperature_for`: FastChat's sampling temperature per category (``FASTCHAT_TEMPERATURES``).

* :func:`answer_dialogues`: turn 1 is answered from ``q1``; turn 2 sees the whole conversation, ``q1``, the model's
  own answer to it, then ``q2`` (as MT-Bench generates, one sample per turn), with any generation backend.
* :func:`judge_requests`: one :class:`~giftlab.evaluation.judge.JudgeRequest` per turn (turn 2 judged on the whole
  conversation), references where the dialogue has them.
* :func:`score_table`: mean rating per category and over all judged turns (MT-Bench's "total", with a bootstrap
  interval over dialogues); a turn without a rating (a malformed reply, a failed call) is counted in ``unrated``
  and left out of the means, never scored 0.
* :func:`make_judge`: the judge a config's ``mtbench.judge`` section names (``rubric`` or ``openai``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from giftlab.data import render_conversation
from giftlab.evaluation.judge import Judgement, JudgeRequest
from giftlab.evaluation.mtbench_prompts import NEED_REF_CATS
from giftlab.stats import ratio_bootstrap_ci

#: FastChat's ``temperature_config`` (``fastchat/llm_judge/common.py`` @0e6d3e4): the temperature each category's
#: answers are sampled at (0 = greedy).
FASTCHAT_TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                         "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}


def temperature_for(category: str, temperatures: Mapping[str, float], default: float) -> float:
    """The sampling temperature of a category's answers: its entry in ``temperatures``, else ``default``."""
    return float(temperatures.get(category, default))


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    if hasattr(value, "tolist"):  # a numpy array from a parquet file
        return _strings(value.tolist())
    return None


def _question_record(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One FastChat record from a FastChat or an HF H4 row (``prompt`` -> ``turns``, ``prompt_id`` -> id)."""
    turns = _strings(row.get("turns", row.get("prompt")))
    qid = row.get("question_id", row.get("prompt_id"))
    if turns is None or len(turns) != 2:
        got = repr(row.get("turns", row.get("prompt")))[:80]
        raise ValueError(f"{where}: expected 'turns' (or 'prompt'): a list of 2 strings, got {got}")
    if qid is None or isinstance(qid, bool):
        raise ValueError(f"{where}: no 'question_id' (or 'prompt_id')")
    if not isinstance(row.get("category"), str) or not row["category"]:
        raise ValueError(f"{where}: no 'category'")
    record = {"question_id": qid, "category": row["category"], "turns": turns}
    reference = _strings(row.get("reference")) if row.get("reference") is not None else None
    if reference:  # H4 stores an empty list where there is none
        record["reference"] = reference
    return record


def _reference_answers(path: str | Path) -> dict[Any, list[str]]:
    """{question_id: [answer 1, answer 2]} of FastChat's ``reference_answer/<model>.jsonl`` (model answers:
    ``{question_id, choices: [{turns: [...]}]}``)."""
    from giftlab.rowfiles import read_rows

    out = {}
    for i, row in enumerate(read_rows(path), 1):
        try:
            turns = _strings(row["choices"][0]["turns"])
        except (KeyError, IndexError, TypeError):
            turns = None
        if turns is None or "question_id" not in row:
            raise ValueError(f"{path}: row {i}: expected a FastChat model answer {{question_id, choices: "
                             f"[{{turns: [...]}}]}}")
        out[row["question_id"]] = turns
    return out


def load_questions(path: str | Path, reference_answers: str | Path | None = None) -> list[dict[str, Any]]:
    """The dialogues of a local questions file (FastChat or HF H4 format), as FastChat records.

    ``reference_answers``: FastChat's ``reference_answer/gpt-4.jsonl``; its answers replace the questions' own
    ``reference`` (what FastChat's judge uses). Every dialogue of a category judged against a reference
    (``NEED_REF_CATS``) must have one (in ``reference_answers`` when given); ids must be unique. Errors are one line
    naming the file and row.
    """
    from giftlab.rowfiles import read_rows

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MT-Bench questions: missing {path} (a local copy of FastChat's "
                                f"data/mt_bench/question.jsonl or of HuggingFaceH4/mt_bench_prompts; docs/scale.md)")
    records = [_question_record(row, f"{path}: row {i}") for i, row in enumerate(read_rows(path), 1)]
    if not records:
        raise ValueError(f"{path}: no questions")
    seen: set = set()
    for r in records:
        if r["question_id"] in seen:
            raise ValueError(f"{path}: question_id {r['question_id']!r} appears twice")
        seen.add(r["question_id"])
    if reference_answers is not None:
        answers = _reference_answers(reference_answers)
        for r in records:
            if r["question_id"] in answers:
                r["reference"] = answers[r["question_id"]]
            elif r["category"] in NEED_REF_CATS:
                # FastChat's judge reads these references from the file alone (ref_answers[judge][question_id]), never
                # the questions' own short ones; HuggingFaceH4/mt_bench_prompts' prompt_id is a hash of the prompt,
                # not FastChat's question_id, so none of its questions is found here
                raise ValueError(f"{reference_answers}: no reference answer for question {r['question_id']!r} "
                                 f"({r['category']}) of {path} (FastChat's question.jsonl numbers them alike; "
                                 f"HuggingFaceH4/mt_bench_prompts' prompt_id does not)")
    for r in records:
        if r["category"] in NEED_REF_CATS and len(r.get("reference") or []) != 2:
            source = reference_answers or path
            raise ValueError(f"{source}: question {r['question_id']!r} ({r['category']}) has no reference answer "
                             f"for both turns; its category is judged against one")
    return records


def answer_dialogues(generator, tokenizer, dialogues: Sequence[Mapping[str, Any]], *, temperature: float,
                     max_new_tokens: int, seed: int, top_p: float = 1.0, chat_template: str | bool = "auto",
                     temperatures: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Each dialogue with the model's ``answers`` to both turns (and per turn ``num_tokens``, ``finish_reasons``,
    and the ``temperature`` it was sampled at: ``temperatures[category]``, else ``temperature``)."""
    for d in dialogues:
        if len(d.get("turns") or []) != 2:
            raise ValueError(f"dialogue {d.get('question_id')}: expected 2 turns, got {len(d.get('turns') or [])}")
    temps = [temperature_for(d["category"], temperatures or {}, temperature) for d in dialogues]

    def generate(conversations: list[list[str]]) -> list:
        """One sample per conversation, the dialogues of each temperature in one batch (order kept)."""
        out: list = [None] * len(conversations)
        for t in dict.fromkeys(temps):
            idx = [i for i, ti in enumerate(temps) if ti == t]
            samples = generator.generate([render_conversation(tokenizer, conversations[i], chat_template)
                                          for i in idx], n=1, temperature=t, top_p=top_p,
                                         max_new_tokens=max_new_tokens, seed=seed)
            for i, s in zip(idx, samples):
                out[i] = s[0]
        return out

    first = generate([[d["turns"][0]] for d in dialogues])
    second = generate([[d["turns"][0], a.text, d["turns"][1]] for d, a in zip(dialogues, first)])
    return [{**dict(d), "answers": [a.text, b.text], "num_tokens": [a.num_tokens, b.num_tokens],
             "finish_reasons": [a.finish_reason, b.finish_reason], "temperature": t}
            for d, a, b, t in zip(dialogues, first, second, temps)]


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


def score_table(answered: Sequence[Mapping[str, Any]], judgements: Sequence[Judgement], *,
                ci_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``{"categories": {cat: {"score", "n", "unrated"}}, "total": {..., "ci95", "truncated"}, "turns": {1: {...},
    2: {...}}}``
    from the judgements of :func:`judge_requests` (in its order): mean ratings over rated turns; the total's
    ``ci95``: percentile bootstrap over dialogues (``giftlab.stats.ratio_bootstrap_ci``)."""
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
    total = cell(everything)
    # dialogues are the units (their two turns share a conversation): resample them, pool their rated turns
    sums = [sum(r for r in pair if r is not None) for pair in zip(turns[1], turns[2])]
    rated = [sum(r is not None for r in pair) for pair in zip(turns[1], turns[2])]
    total["ci95"] = list(ratio_bootstrap_ci(sums, rated, n_resamples=ci_resamples, seed=seed))
    # answers cut at mtbench.max_new_tokens (judged as they are): a policy trained on long reasoning traces is cut
    # more often than one that answers briefly, which the ratings alone do not say
    total["truncated"] = sum(reason == "length" for d in answered for reason in d.get("finish_reasons", ()))
    return {"categories": {c: cell(r) for c, r in sorted(groups.items())}, "total": total,
            "turns": {t: cell(r) for t, r in turns.items()}}


def make_judge(spec: Mapping[str, Any], cache_path: str | Path | None = None):
    """The judge of a config's ``mtbench.judge`` section: ``{"kind": "rubric", correct?, wrong?, missing?}`` or
    ``{"kind": "openai", "model", base_url?, api_key_env?, timeout_s?, max_retries?, max_in_flight?,
    temperature?, max_tokens?}`` (the key is read from the environment variable ``api_key_env``, never from
    the config)."""
    import os

    kind = spec.get("kind")
    if kind == "rubric":
        from giftlab.evaluation.rubric_judge import RubricJudge

        return RubricJudge(**{k: spec[k] for k in ("correct", "wrong", "missing") if k in spec})
    if kind == "openai":
        from giftlab.evaluation.judge import OpenAIJudge

        if not spec.get("model"):
            raise ValueError("mtbench.judge.model: missing (the judge model's name on its server, e.g. gpt-4)")
        key_env = spec.get("api_key_env") or "OPENAI_API_KEY"
        api_key = os.environ.get(key_env) or None
        if api_key is None and key_env != "OPENAI_API_KEY":
            # the variable the config names is unset: never fall back to OPENAI_API_KEY (OpenAIJudge would), which
            # would send that key to whatever server base_url names
            if not (spec.get("base_url") or os.environ.get("OPENAI_BASE_URL")):
                raise ValueError(f"mtbench.judge.api_key_env: ${key_env} is not set (and no base_url is given)")
            api_key = "EMPTY"   # a local server without a key (vllm serve without --api-key)
        options = {k: spec[k] for k in ("timeout_s", "max_retries", "max_in_flight", "temperature", "max_tokens")
                   if spec.get(k) is not None}
        # one failure more than the job tolerates loses it: send nothing after that (OpenAIJudge)
        options["stop_after_failures"] = int(spec.get("max_failed_calls", 0)) + 1
        return OpenAIJudge(spec["model"], base_url=spec.get("base_url") or None,
                           api_key=api_key, cache_path=cache_path, **options)
    raise ValueError(f"mtbench.judge.kind: {kind!r} is not a judge (rubric or openai)")
