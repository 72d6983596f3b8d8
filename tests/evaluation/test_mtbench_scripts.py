"""Table 5's three scripts end to end, in process: the tiny questions, a tiny model's two-turn answers, and a judge
(the rubric, and a real local OpenAI-compatible server) whose failures stop the job with nothing written and whose
replies a rerun reuses."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from giftlab.rowfiles import read_jsonl
from helpers import REPO
from openai_stub_server import StubServer, answer


def script(name):
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name, *args):
    """``cli.run(main, argv)`` as the rule calls it: 0 on success, else the exit code (one line on stderr)."""
    from giftlab import cli

    try:
        cli.run(script(name).main, [str(a) for a in args])
    except SystemExit as exc:
        return exc.code
    return 0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from giftlab.data import write_jsonl
    from giftlab.tinyworld import build_world

    out = tmp_path_factory.mktemp("world")
    # a corpus large enough to hold some of the dialogues' chains (as the tiny default's 40k documents do)
    world = build_world({"seed": 3, "n_problems": 60, "pretrain_docs": 3000, "n_tiny_id": 10, "n_tiny_ood": 5,
                         "n_tiny_family": 5, "n_tiny_mc": 5})
    write_jsonl(out / "problems.jsonl", world.problems)
    write_jsonl(out / "pretrain.jsonl", [{"text": doc} for doc in world.corpus])
    for name, records in world.benchmarks.items():
        write_jsonl(out / f"{name}.jsonl", records)
    return out


@pytest.fixture(scope="module")
def questions(world):
    out = world / "dialogues.jsonl"
    config = json.dumps({"seed": 3, "n_dialogues": 9, "world": {"n_problems": 60}})
    benches = sorted(str(p) for p in world.glob("tiny_*.jsonl"))
    assert run("mtbench_questions", "--config", config, "--problems", world / "problems.jsonl",
               "--corpus", world / "pretrain.jsonl", "--benchmarks", *benches, "--out", out,
               "--provenance", world / "q.provenance.json") == 0
    return out


def test_tiny_questions_are_fastchat_records_held_out_of_training_pretraining_and_benchmarks(world, questions):
    # the pretraining corpus too: before, about a third of the tiny default's turn-1 questions were documents the
    # bases had pretrained on, worked answer included
    rows = read_jsonl(questions)
    assert len(rows) == 9 and {r["category"] for r in rows} == {"math", "reasoning", "extraction"}
    held = {r["question"] for r in read_jsonl(world / "problems.jsonl")}
    held |= {r["text"].split("\n", 1)[0] for r in read_jsonl(world / "pretrain.jsonl")}
    held |= {r.get("question", r["prompt"]) for p in world.glob("tiny_*.jsonl") for r in read_jsonl(p)}
    assert not {r["turns"][0] for r in rows} & held
    provenance = json.loads((world / "q.provenance.json").read_text())
    assert str(questions) in provenance["outputs"] and provenance["provenance"]["config"]["n_dialogues"] == 9


@pytest.fixture(scope="module")
def answered(base_dir, questions, tmp_path_factory):
    out = tmp_path_factory.mktemp("answers")
    config = json.dumps({"seed": 0, "backbone": "qwen", "run": "sft", "stage": "rl", "max_new_tokens": 8,
                         "temperatures": {"math": 0.0, "reasoning": 0.7}, "temperature": 0.0, "backend": "hf"})
    folder = out / "questions"  # the second run reads them as a downloaded dataset folder (its hidden metadata too)
    (folder / ".cache").mkdir(parents=True)
    (folder / "question.jsonl").write_bytes(Path(questions).read_bytes())
    (folder / ".cache" / "question.jsonl.metadata").write_text("download metadata, never rows")
    for name, source in (("a", questions), ("b", folder)):
        assert run("mtbench_answer", "--config", config, "--model", base_dir, "--questions", source,
                   "--answers", out / f"{name}.jsonl", "--summary", out / f"{name}.json") == 0
    return out


def test_answers_are_reproducible_and_summarised(answered):
    assert (answered / "a.jsonl").read_bytes() == (answered / "b.jsonl").read_bytes()
    rows = read_jsonl(answered / "a.jsonl")
    assert all(len(r["answers"]) == 2 and r["temperature"] == (0.7 if r["category"] == "reasoning" else 0.0)
               for r in rows)
    summary = json.loads((answered / "a.json").read_text())
    assert summary["n_dialogues"] == 9 and summary["backend"] == "hf"
    assert summary["provenance"]["config"]["run"] == "sft" and len(summary["mean_tokens"]) == 2
    # a questions folder is recorded by its files' digest (hashing the folder as a file failed after the answers)
    from giftlab.provenance import path_sha256

    folder = answered / "questions"
    recorded = json.loads((answered / "b.json").read_text())["questions"]
    assert recorded == {str(folder): path_sha256(folder)}
    (folder / ".cache" / "question.jsonl.metadata").write_text("downloaded again")
    assert path_sha256(folder) == recorded[str(folder)]  # hidden files are no part of it, as the readers skip them


def test_rubric_judge_scores_by_category(answered, tmp_path):
    config = json.dumps({"seed": 0, "backbone": "qwen", "run": "sft", "judge": {"kind": "rubric"}})
    assert run("mtbench_judge", "--config", config, "--answers", answered / "a.jsonl",
               "--judgements", tmp_path / "j.jsonl", "--scores", tmp_path / "s.json") == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    verdicts = read_jsonl(tmp_path / "j.jsonl")
    assert len(verdicts) == 18 and all(v["rating"] in (1.0, 3.0, 10.0) for v in verdicts)
    assert scores["total"]["n"] == 18 and scores["judge"] == "rubric"
    assert scores["total"]["score"] == pytest.approx(sum(v["rating"] for v in verdicts) / 18)


@pytest.fixture(scope="module")
def server():
    srv = StubServer().start()
    yield srv
    srv.stop()


def test_an_api_judge_that_keeps_failing_writes_nothing_and_a_rerun_sends_only_the_failed_calls(server, tmp_path,
                                                                                                  capsys):
    rows = [{"question_id": i, "category": "writing", "turns": [f"Write {i}.", "Shorter."],
             "answers": [answer(f"poem {i}", RATING=7), answer(f"short {i}", SCENARIO="500-once" if i == 2 else "ok")]}
            for i in range(1, 4)]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / "cache.jsonl"
    # one call in flight: the calls go in order, and the 4th (dialogue 2, turn 2) fails
    judge = {"kind": "openai", "model": "stub-judge", "base_url": server.url, "api_key_env": "STUB_KEY",
             "max_retries": 0, "timeout_s": 5, "max_in_flight": 1, "cache": str(cache)}
    config = json.dumps({"seed": 0, "backbone": "qwen", "run": "sft", "judge": judge})
    outs = ["--judgements", tmp_path / "j.jsonl", "--scores", tmp_path / "s.json"]
    server.reset_counts()
    assert run("mtbench_judge", "--config", config, "--answers", answers, *outs) == 1
    err = capsys.readouterr().err.strip()
    # the failure loses the job (max_failed_calls 0): the two calls after it are not sent
    assert err.startswith("error: judge stub-judge: 3 of 6 calls failed") and "\n" not in err
    assert not (tmp_path / "j.jsonl").exists() and not (tmp_path / "s.json").exists()
    assert server.count == 4 and len(read_jsonl(cache)) == 3
    # (no reset: the server counts attempts per prompt, and the failed one's next attempt succeeds)
    assert run("mtbench_judge", "--config", config, "--answers", answers, *outs) == 0
    assert server.count == 7                       # the failed call and the 2 unsent; 3 replies came from the cache
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["judge_stats"]["cache_hits"] == 3 and scores["judge_stats"]["sent"] == 3
    assert scores["turns"]["1"]["score"] == 7.0 and scores["total"]["n"] == 6
    server.reset_counts()
    assert run("mtbench_judge", "--config", config, "--answers", answers, *outs) == 0
    assert server.count == 0                       # a rerun never pays twice
