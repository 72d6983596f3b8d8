"""RL dynamics (Figure 3): pass@1 of the live policy during GRPO, kept across a resume."""

import gzip
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerCallback

from giftlab.models import load_model
from giftlab.tinyworld.tokenizer import build_tokenizer
from giftlab.cli import ConfigError
from giftlab.evaluation.benchmarks import load_benchmark
from giftlab.training.dynamics import (DynamicsCallback, dynamics_problems, dynamics_records, dynamics_settings,
                                       read_dynamics)
from giftlab.training.grpo import train_grpo

RL_ROWS = [{"question": f"Start with {i}. Add {i % 5 + 1}. What is the result?",
            "final_answer": str(i + i % 5 + 1)} for i in range(1, 9)]
BENCH = [{"id": f"b{i}", "prompt": f"Start with {i}. Add 2. What is the result?", "gold": str(i + 2),
          "kind": "math"} for i in range(1, 7)]
GRPO = dict(max_steps=3, lr=1e-3, lr_scheduler="constant", num_generations=2, prompts_per_generation=2,
            prompts_per_update=2, temperature=1.0, max_completion_length=6, save_steps=1,
            grading_timeout=10, eval_every=2, eval_problems=3, eval_samples=2, eval_temperature=0.6,
            eval_max_new_tokens=5, eval_batch_size=8)


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "tiny_id.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in BENCH))
    return path


def test_settings_are_off_by_default_and_fill_defaults():
    assert dynamics_settings({"max_completion_length": 7}) is None
    assert dynamics_settings({"max_completion_length": 7, "eval_every": 0}) is None
    s = dynamics_settings({"max_completion_length": 7, "eval_every": 5})
    assert s["eval_every"] == 5 and s["eval_max_new_tokens"] == 7 and s["eval_temperature"] == 0.6
    assert s["eval_problems"] >= 1 and s["eval_samples"] >= 1
    assert s["eval_subset"] == "random"
    assert dynamics_settings({"max_completion_length": 7, "eval_every": 5, "eval_subset": "first"})["eval_subset"] \
        == "first"
    with pytest.raises(ConfigError, match="grpo.eval_subset must be one of random, first, got 'easiest'"):
        dynamics_settings({"max_completion_length": 7, "eval_every": 5, "eval_subset": "easiest"})


def test_the_problems_are_a_fixed_seeded_sample_not_the_first_ones():
    """tiny_id.jsonl is sorted by difficulty: its first 64 problems are its easiest (Figure 3 sat 1.5-1.8x above
    Table 1). The subset is random.Random(0)'s sample, in benchmark order, the same on every call, and moves no
    global random state (training must not depend on which problems the dynamics evaluate)."""
    records = [{"id": f"p{i}", "prompt": f"q{i}", "gold": str(i), "kind": "math", "difficulty": 1 + i // 64}
               for i in range(200)]
    state, torch_state = random.getstate(), torch.get_rng_state()
    chosen = dynamics_problems(records, 64, "random")
    assert random.getstate() == state and torch.equal(torch.get_rng_state(), torch_state)
    assert [r["id"] for r in chosen] == [f"p{i}" for i in sorted(random.Random(0).sample(range(200), 64))]
    assert chosen != records[:64] and {r["difficulty"] for r in chosen} == {1, 2, 3, 4}
    assert [int(r["id"][1:]) for r in chosen] == sorted(int(r["id"][1:]) for r in chosen)  # benchmark order
    assert dynamics_problems(records, 64, "random") == chosen == dynamics_problems(list(records), 64)
    assert dynamics_problems(records, 64, "first") == records[:64]  # the old behaviour
    assert dynamics_problems(records[:10], 64, "random") == records[:10]  # a smaller benchmark: all of it


def test_a_gzipped_or_parquet_benchmark_loads_as_the_evaluation_reads_it(tmp_path):
    """eval.benchmark_dir may hold math500.jsonl.gz (or .parquet, or a folder): the dynamics read it through the
    benchmark's own loader; Path.stem ('math500.jsonl') sent it to the plain JSON Lines reader (UnicodeDecodeError)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks" / "math500.jsonl"
    expected = load_benchmark("math500", path=source)
    gz = tmp_path / "math500.jsonl.gz"
    gz.write_bytes(gzip.compress(source.read_bytes()))
    assert dynamics_records(gz) == expected
    pq.write_table(pa.Table.from_pylist([json.loads(line) for line in source.read_text().splitlines() if line]),
                   tmp_path / "math500.parquet")
    assert [(r["id"], r["prompt"], r["gold"]) for r in dynamics_records(tmp_path / "math500.parquet")] == \
        [(r["id"], r["prompt"], r["gold"]) for r in expected]


def test_from_model_generates_like_a_path_loaded_model_and_leaves_the_model_alone(base_dir):
    from giftlab.evaluation.generation import HFGenerator

    tok = build_tokenizer()
    tok.padding_side = "right"
    model = load_model(base_dir)
    gen_config = model.generation_config
    prompts = ["Start with 3. Add 2.", "Start with 10. Add 4. What is the result?"]
    kw = dict(n=3, temperature=0.8, top_p=1.0, max_new_tokens=6, seed=7)
    borrowed = HFGenerator.from_model(model, tok, batch_size=4).generate(prompts, **kw)
    loaded = HFGenerator(base_dir, batch_size=2).generate(prompts, **kw)
    assert [[s.text for s in per] for per in borrowed] == [[s.text for s in per] for per in loaded]
    assert model.generation_config is gen_config and tok.padding_side == "right"


class _FakeGrader:
    """Every other response is correct; exposes pool-like ``stats``."""

    def __init__(self):
        self.stats = {"graded": 0}

    def grade_many(self, responses, golds):
        self.stats = {"graded": self.stats["graded"] + len(responses)}
        return [SimpleNamespace(correct=i % 2 == 0, extracted="1", timed_out=False)
                for i in range(len(responses))]


def test_callback_schedule_rows_and_train_mode(base_dir, tmp_path):
    tok = build_tokenizer()
    model = load_model(base_dir).train()
    grader = _FakeGrader()
    settings = dynamics_settings({**GRPO, "eval_samples": 2})
    cb = DynamicsCallback(tmp_path / "dynamics.jsonl", BENCH[:3], tok, grader.grade_many, settings, seed=0)
    args, control = SimpleNamespace(), SimpleNamespace()
    state = SimpleNamespace(global_step=0, max_steps=4, is_world_process_zero=True)
    cb.on_train_begin(args, state, control, model=model)
    for step in (1, 2, 3, 4):
        state.global_step = step
        cb.on_step_end(args, state, control, model=model)
    cb.on_train_end(args, state, control, model=model)  # step 4 already measured: not again
    assert model.training  # train mode restored
    assert [r["step"] for r in cb.rows] == [0, 2, 4]
    assert [r["progress"] for r in cb.rows] == [0.0, 0.5, 1.0]
    for r in cb.rows:
        assert r["pass@1"] == pytest.approx(0.5) and r["n_problems"] == 3 and r["n_samples"] == 2
        assert r["pass@1_ci95"][0] <= 0.5 <= r["pass@1_ci95"][1]
    assert cb.grading_stats == {"graded": 3 * 3 * 2}
    assert read_dynamics(tmp_path / "dynamics.jsonl") == cb.rows


class InterruptAfterSave(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated kill")


def _run(base_dir, tmp_path, bench_file, callbacks=()):
    tok = build_tokenizer()
    return train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=tok, rl_rows=RL_ROWS,
                      cfg=GRPO, seed=0, out_dir=tmp_path / "out", work_dir=tmp_path / "work",
                      job_config={"grpo": GRPO, "run": "sft"}, dynamics_benchmark=bench_file,
                      extra_callbacks=callbacks)


def test_grpo_records_dynamics_and_keeps_them_across_a_resume(base_dir, tmp_path, bench_file):
    with pytest.raises(KeyboardInterrupt):
        _run(base_dir, tmp_path, bench_file, callbacks=[InterruptAfterSave(2)])
    log = tmp_path / "work" / "dynamics.jsonl"
    first = read_dynamics(log)
    assert [r["step"] for r in first] == [0, 2]
    # A row measured after the newest complete checkpoint (a later kill) is dropped on resume.
    with open(log, "a") as fh:
        fh.write(json.dumps({**first[-1], "step": 3, "pass@1": 0.123}) + "\n")
    (tmp_path / "work" / "checkpoint-3").mkdir()  # torn (unmarked) checkpoint: discarded

    metrics = _run(base_dir, tmp_path, bench_file)
    assert metrics["resumed_from"].endswith("checkpoint-2") and metrics["steps"] == 3
    dyn = metrics["dynamics"]
    assert [r["step"] for r in dyn] == [0, 2, 3]
    assert dyn[:2] == first  # computed before the kill, kept verbatim
    assert [r["progress"] for r in dyn] == pytest.approx([0.0, 2 / 3, 1.0])
    for r in dyn:
        assert 0.0 <= r["pass@1"] <= 1.0 and r["n_problems"] == 3 and r["n_samples"] == 2
        assert set(r) >= {"step", "progress", "pass@1", "pass@1_ci95", "n_problems", "n_samples"}
    assert dyn[-1]["pass@1"] != 0.123 or dyn[-1]["seconds"] != first[-1]["seconds"]
    # the whole run's counts, as an uninterrupted run has them (the checkpoint held steps 0-2's, this process added
    # step 3's): 3 evaluations of 3 problems x 2 samples, and 3 steps of 2 prompts x G = 2 rewards
    assert metrics["dynamics_grading"]["graded"] == 3 * 3 * 2
    assert metrics["grading"]["graded"] == 3 * 2 * 2
    saved = json.loads((tmp_path / "work" / "checkpoint-3" / "grading_stats.json").read_text())  # the last checkpoint
    assert saved["grading"] == metrics["grading"]
    assert [r["grading"]["graded"] for r in dyn] == [3 * 2] * 3  # each evaluation's count, kept in its row
    assert metrics["dynamics_benchmark"] == str(bench_file)
    chosen = dynamics_problems(BENCH, 3, "random")
    assert metrics["dynamics_subset"] == {"subset": "random", "seed": 0, "problems": 3, "of": 6,
                                          "ids": [r["id"] for r in chosen]}
    assert read_dynamics(log) == dyn
    assert (tmp_path / "out" / "config.json").exists()


def test_rows_of_other_problems_are_not_reused_on_resume(base_dir, tmp_path):
    tok = build_tokenizer()
    settings = dynamics_settings(GRPO)
    path = tmp_path / "dynamics.jsonl"
    grader = _FakeGrader()
    first = DynamicsCallback(path, BENCH[:3], tok, grader.grade_many, settings, seed=0)
    first.evaluate_model(load_model(base_dir), step=0, max_steps=3)
    same = DynamicsCallback(path, BENCH[:3], tok, grader.grade_many, settings, seed=0, resume_step=2)
    assert [r["step"] for r in same.rows] == [0]
    other = DynamicsCallback(path, BENCH[3:6], tok, grader.grade_many, settings, seed=0, resume_step=2)
    assert other.rows == [] and read_dynamics(path) == []


def test_dynamics_are_off_without_eval_every_and_do_not_change_training(base_dir, tmp_path, bench_file):
    tok = build_tokenizer()
    off = {k: v for k, v in GRPO.items() if not k.startswith("eval_")} | {"max_steps": 2}
    on = GRPO | {"max_steps": 2, "eval_every": 1}
    weights = {}
    for name, cfg in (("off", off), ("on", on), ("first", on | {"eval_subset": "first"})):
        metrics = train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=tok, rl_rows=RL_ROWS,
                             cfg=cfg, seed=0, out_dir=tmp_path / name, work_dir=tmp_path / f"work_{name}",
                             job_config={"grpo": cfg}, dynamics_benchmark=bench_file)
        weights[name] = load_model(tmp_path / name).state_dict()
        if name == "off":
            assert metrics["dynamics"] == [] and "dynamics_grading" not in metrics
            assert not (tmp_path / "work_off" / "dynamics.jsonl").exists()
        else:
            assert [r["step"] for r in metrics["dynamics"]] == [0, 1, 2]
            assert metrics["grading"]["graded"] == 2 * 2 * 2  # reward gradings only: 2 steps x 2 prompts x G
            assert metrics["dynamics_subset"]["subset"] == cfg.get("eval_subset", "random")
    # Evaluating in between touches no RNG and leaves the weights alone: training is identical, whichever problems
    # the dynamics evaluate.
    for key, value in weights["off"].items():
        torch.testing.assert_close(weights["on"][key], value, rtol=0, atol=0)
        torch.testing.assert_close(weights["first"][key], value, rtol=0, atol=0)


def test_step_log_drops_torn_lines_and_steps_after_the_resume(tmp_path):
    from giftlab.training.tracking import read_step_rows as read_step_log

    log = tmp_path / "steps.jsonl"
    log.write_text('{"step": 1, "reward": 0.1}\n{"step": 2, "reward": 0.2}\n{"step": 3, "rew')
    assert [r["step"] for r in read_step_log(log)] == [1, 2]
    assert [r["step"] for r in read_step_log(log, up_to_step=1)] == [1]


def test_a_run_finished_again_from_its_last_checkpoint_counts_what_the_first_counted(base_dir, tmp_path, bench_file):
    """Killed after its last checkpoint (and its final evaluation), before the export: the rerun trains nothing, and
    its metrics still count the whole run's gradings (found by benchmarks/faults.py: they used to be 0)."""
    import shutil

    first = _run(base_dir, tmp_path, bench_file)
    shutil.rmtree(tmp_path / "out")
    again = _run(base_dir, tmp_path, bench_file)
    assert again["resumed_from"].endswith("checkpoint-3")
    assert again["grading"] == first["grading"] and again["grading"]["graded"] == 3 * 2 * 2
    assert again["dynamics_grading"] == first["dynamics_grading"] and again["dynamics"] == first["dynamics"]
