"""The tiny world: determinism, DeepMath schema, solution styles, held-out disjointness, tokenizer."""

from __future__ import annotations

import json
import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from giftlab.tinyworld import (  # noqa: E402
    BENCHMARK_NAMES, STYLES, TOPIC, WorldConfig, build_tokenizer, build_world, classify_style, is_correct,
    last_boxed, make_corpus, problem_id, render, sample_problem,
)
from giftlab.tinyworld.problems import random_slip  # noqa: E402

SMALL = {"seed": 7, "n_problems": 300, "pretrain_docs": 2000, "n_tiny_id": 60, "n_tiny_ood": 30,
         "n_tiny_family": 24, "n_tiny_mc": 24}


def _parts(doc: str) -> tuple[str, str | None, str]:
    """(question, options line or None, solution) of a corpus document."""
    question, rest = doc.split("\n", 1)
    if rest.startswith("(A) "):
        options, solution = rest.split("\n", 1)
        return question, options, solution
    return question, None, rest


@pytest.fixture(scope="module")
def world():
    return build_world(SMALL)


def test_deterministic_from_seed(world):
    again = build_world(SMALL)
    assert again.problems == world.problems
    assert again.corpus == world.corpus
    assert again.benchmarks == world.benchmarks
    other = build_world({**SMALL, "seed": 8})
    assert other.problems != world.problems and other.corpus != world.corpus


def test_deepmath_schema(world):
    assert len(world.problems) == SMALL["n_problems"]
    lo, hi = WorldConfig().train_steps
    for row in world.problems:
        assert isinstance(row["question"], str) and row["question"].startswith("Start with ")
        assert isinstance(row["final_answer"], str) and row["final_answer"].lstrip("-").isdigit()
        assert isinstance(row["difficulty"], float) and lo <= row["difficulty"] <= hi
        assert row["topic"] == TOPIC
        assert row["id"] == problem_id(row["question"])
        for i in (1, 2, 3):
            assert isinstance(row[f"r1_solution_{i}"], str)
    assert len({r["id"] for r in world.problems}) == len(world.problems)


def test_demonstrations_are_correct_and_labelled(world):
    for row in world.problems:
        for i, style in enumerate(row["solution_styles"], start=1):
            sol = row[f"r1_solution_{i}"]
            assert sol.rstrip(".").endswith(f"\\boxed{{{row['final_answer']}}}")
            assert last_boxed(sol) == row["final_answer"] and is_correct(sol, row["final_answer"])
            # 1-step `steps` and `expression` solutions are the same text
            assert classify_style(sol) == style or row["difficulty"] == 1.0


def test_values_stay_in_range_and_styles_render():
    rng = random.Random(0)
    for _ in range(300):
        p = sample_problem(rng, rng.randint(1, 5))
        assert all(0 <= v <= 99 for v in [p.start] + p.values)
        for style in STYLES:
            sol = render(p, style)
            assert last_boxed(sol) == str(p.answer)
            if len(p.steps) > 1:
                assert classify_style(sol) == style
        slip = random_slip(rng, p)
        assert last_boxed(render(p, "steps", slip)) != str(p.answer)


def test_example_question_and_solution():
    from giftlab.tinyworld import Problem

    p = Problem(7, (("add", 5), ("mul", 2), ("sub", 3)))
    assert p.question == "Start with 7. Add 5. Multiply by 2. Subtract 3. What is the result?"
    assert render(p, "steps") == "7+5=12\n12*2=24\n24-3=21\n\\boxed{21}"
    assert render(p, "expression") == "(7+5)*2-3=21\n\\boxed{21}"
    assert render(p, "chain") == "7 -> 12 -> 24 -> 21\n\\boxed{21}"


def test_style_mix_is_configurable():
    w = build_world({**SMALL, "demo_styles": {"answer": 1.0}, "pretrain_styles": {"steps": 1.0},
                     "fact_rate": 0.0, "slip_rate": 0.0, "mc_rate": 0.0})
    assert all(r["solution_styles"] == ["answer"] * 3 for r in w.problems)
    assert all(classify_style(d.split("\n", 1)[1]) == "steps" for d in w.corpus)
    with pytest.raises(ValueError, match="world.demo_styles"):
        build_world({**SMALL, "demo_styles": {"telepathy": 1.0}})
    with pytest.raises(ValueError, match="world.bogus"):
        WorldConfig.from_dict({"bogus": 1})


def test_benchmarks_disjoint_from_training_and_corpus(world):
    b = world.benchmarks
    assert list(b) == list(BENCHMARK_NAMES)
    for name in BENCHMARK_NAMES:
        assert len(b[name]) == SMALL[f"n_{name}"]
        for rec in b[name]:
            assert set(rec) >= {"id", "prompt", "gold", "kind"}
            assert rec["id"] == problem_id(rec["prompt"])
    held = [r.get("question", r["prompt"]) for recs in b.values() for r in recs]
    assert len(set(held)) == len(held)                                 # pairwise disjoint
    assert not set(held) & {r["question"] for r in world.problems}
    assert not set(held) & {_parts(d)[0] for d in world.corpus}
    assert all(r["difficulty"] in (1.0, 2.0, 3.0) for r in b["tiny_id"] + b["tiny_mc"])
    assert all(r["difficulty"] == 4.0 for r in b["tiny_ood"])
    assert sorted({r["difficulty"] for r in b["tiny_id"]}) == [1.0, 2.0, 3.0]      # stratified


def test_family_benchmark_uses_an_op_training_never_sees(world):
    assert all("Divide" not in r["question"] for r in world.problems)
    family = world.benchmarks["tiny_family"]
    assert all(r["kind"] == "math" and "Divide by" in r["prompt"] for r in family)
    assert all(r["gold"] == str(_answer(r["prompt"])) for r in family)
    assert {r["difficulty"] for r in family} == {2.0, 3.0}
    assert 0.06 < sum("Divide" in d for d in world.corpus) / len(world.corpus) < 0.14   # family_rate 0.1
    with pytest.raises(ValueError, match="world.pretrain_ops: tiny_family needs an op that world.ops lacks"):
        WorldConfig.from_dict({"pretrain_ops": ["add", "sub", "mul"]})
    with pytest.raises(ValueError, match="world.n_tiny_family: must be a positive integer"):
        WorldConfig.from_dict({"n_tiny_family": 0})


def test_mc_benchmark_items():
    from giftlab.evaluation.choice import extract_letter

    w = build_world({**SMALL, "pretrain_docs": 10})
    options = ["0-9", "10-19", "20-29", "30-99"]
    for rec in w.benchmarks["tiny_mc"]:
        assert rec["kind"] == "multiple_choice" and rec["choices"] == options
        assert rec["prompt"] == rec["question"] + "\n(A) 0-9 (B) 10-19 (C) 20-29 (D) 30-99"
        lo, hi = map(int, options["ABCD".index(rec["gold"])].split("-"))
        assert lo <= _answer(rec["question"]) <= hi
        assert extract_letter(f"1+1=2\n\\boxed{{{rec['gold']}}}", n_choices=4) == rec["gold"]
    golds = [r["gold"] for r in w.benchmarks["tiny_mc"]]
    assert sorted(golds.count(L) for L in "ABCD") == [6, 6, 6, 6]     # balanced: guessing scores 25%
    assert golds != sorted(golds)                                      # and interleaved
    assert build_world({**SMALL, "pretrain_docs": 10, "mc_bins": [50]}).benchmarks["tiny_mc"][0][
        "choices"] == ["0-49", "50-99"]
    for bad in ([30, 10], [0, 10], [10, 100], "10"):
        with pytest.raises(ValueError, match="world.mc_bins"):
            WorldConfig.from_dict({"mc_bins": bad})


def test_corpus_exclude_by_question_or_id():
    cfg = WorldConfig.from_dict({**SMALL, "fact_rate": 0.0})
    docs = make_corpus(cfg)
    qs = [d.split("\n", 1)[0] for d in docs]
    common = sorted(set(qs))[:20]
    ex = set(common[:10]) | {problem_id(q) for q in common[10:]}
    docs2 = make_corpus(cfg, exclude=ex)
    assert not set(common) & {d.split("\n", 1)[0] for d in docs2}


def test_corpus_has_styles_slips_facts_and_mc_items(world):
    solutions = [_parts(d) for d in world.corpus if d.startswith("Start")]
    plain = [(q, sol) for q, opts, sol in solutions if opts is None]
    kinds = {classify_style(sol) for _, sol in plain}
    assert set(STYLES) <= kinds
    assert any(not d.startswith("Start") for d in world.corpus)       # fact documents
    wrong = sum(last_boxed(sol) != str(_answer(q)) for q, sol in plain)
    assert 0.03 < wrong / len(world.corpus) < 0.15                    # slip_rate 0.08
    mc = [(q, opts, sol) for q, opts, sol in solutions if opts is not None]
    assert 0.03 < len(mc) / len(world.corpus) < 0.09                  # mc_rate 0.06
    for q, opts, sol in mc:
        assert opts == "(A) 0-9 (B) 10-19 (C) 20-29 (D) 30-99"
        assert last_boxed(sol) == "ABCD"[sum(_answer(q) >= b for b in (10, 20, 30))]   # the right letter


def _answer(question: str) -> int:
    parts = [s.strip() for s in question.split(".") if s.strip()]
    v = int(parts[0].split()[-1])
    for s in parts[1:-1]:
        n = int(s.split()[-1])
        v = {"Add": v + n, "Subtract": v - n, "Multiply": v * n, "Divide": v // n}[s.split()[0]]
    return v


# ------------------------------------------------------------------------------- tokenizer

TEXT = "Start with 7. Add 5.\n  7+5=12\n\\boxed{12} ~{}|"


def test_tokenizer_roundtrip_through_autotokenizer_next_to_qwen2_config(tmp_path):
    from transformers import AutoTokenizer

    from giftlab.models import build_tiny_model, load_tokenizer

    tok = build_tokenizer(tmp_path)
    model = build_tiny_model("qwen2", len(tok), 16, 1, 2, 32, tokenizer=tok)
    model.save_pretrained(tmp_path)                      # config.json says model_type qwen2
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "qwen2"
    expected = tok(TEXT)["input_ids"]
    assert expected[0] == tok.bos_token_id and len(expected) == len(TEXT) + 1
    assert tok.decode(expected, skip_special_tokens=True) == TEXT
    # transformers 5.x hands back a Qwen2Tokenizer here whatever tokenizer_class says; the
    # byte-level spelling of the vocab makes it tokenize exactly like ours
    for loaded in (AutoTokenizer.from_pretrained(tmp_path), load_tokenizer(tmp_path)):
        ids = loaded(TEXT)["input_ids"]
        assert ids == expected, type(loaded).__name__
        assert loaded.decode(ids, skip_special_tokens=True) == TEXT
        assert loaded.decode(ids) == "<bos>" + TEXT
        assert loaded(TEXT + "<eos>")["input_ids"] == expected + [loaded.eos_token_id]
        assert (loaded.pad_token_id, loaded.eos_token_id, loaded.bos_token_id) == (0, 1, 2)
        assert len(loaded) == len(tok) == 100
    assert tok("\u00e9")["input_ids"][1] == tok.unk_token_id


def test_tokenizer_dir_alone_loads_as_fast(tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    build_tokenizer(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, PreTrainedTokenizerFast)
    assert loaded.decode(loaded(TEXT)["input_ids"], skip_special_tokens=True) == TEXT


def test_chat_template(tmp_path):
    from transformers import AutoTokenizer

    build_tokenizer(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    user = [{"role": "user", "content": "Start with 2. Add 1. What is the result?"}]
    prompt = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert prompt == user[0]["content"] + "\n"
    assert tok.apply_chat_template(user, tokenize=False, add_generation_prompt=False) == prompt
    full = tok.apply_chat_template(user + [{"role": "assistant", "content": "2+1=3\n\\boxed{3}"}],
                                   tokenize=False)
    assert full == prompt + "2+1=3\n\\boxed{3}" + tok.eos_token
    ids = tok(full)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert ids.count(tok.eos_token_id) == 1 and ids.count(tok.bos_token_id) == 1
