"""The math grader's percent rule (OMI: a number also matches gold/100 and gold*100) as a config
switch: ``eval.percent_rule`` / ``grpo.percent_rule``, validated by the schema, bound into the
evaluation's grading pool and recorded in its summary."""

from __future__ import annotations

import json
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from giftlab.cli import ConfigError
from giftlab.config import deep_merge, load_config, validate_config
from giftlab.evaluation import job as evaluation_job
from giftlab.evaluation.generation import Sample
from helpers import REPO

PARAMS = REPO / "params.yaml"


@pytest.mark.parametrize("section", ["eval", "grpo"])
def test_schema_accepts_a_boolean_percent_rule_only(section):
    base = load_config(PARAMS)
    validate_config(deep_merge(base, {section: {"percent_rule": False}}))
    with pytest.raises(ConfigError, match="percent_rule"):
        validate_config(deep_merge(base, {section: {"percent_rule": "no"}}))


def test_paper_profile_keeps_the_papers_rule():
    paper = load_config(PARAMS, REPO / "config" / "paper.yaml")
    assert paper["eval"]["percent_rule"] is True and paper["grpo"]["percent_rule"] is True


class _Gen:
    backend = "fake"
    tokenizer = SimpleNamespace(chat_template=None)

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        return [[Sample(text=r"\boxed{50}", num_tokens=3, finish_reason="stop", seed=seed + i)
                 for i in range(n)] for _ in prompts]


@pytest.mark.parametrize("setting", [None, True, False])
def test_evaluate_binds_the_rule_into_the_pool_and_records_it(tmp_path, monkeypatch, setting):
    import giftlab.evaluation.generation as generation
    from giftlab.rewards import grade

    seen = []

    @contextmanager
    def fake_pool(workers, timeout, **kwargs):  # the real GradingPool's rule, in-process
        seen.append(kwargs)
        rule = kwargs.get("percent_rule", True)
        yield lambda responses, golds: [grade(r, g, include_percentage=rule)
                                        for r, g in zip(responses, golds)]

    monkeypatch.setattr(evaluation_job, "grading_pool", fake_pool)
    monkeypatch.setattr(generation, "make_generator", lambda model, **engine: _Gen())
    bench = tmp_path / "tiny_id.jsonl"
    bench.write_text(json.dumps({"id": 1, "prompt": "Half of one?", "gold": "0.5", "kind": "math"}) + "\n")
    config = {"seed": 0, "n_samples": 1, "max_new_tokens": 4, "benchmark": "tiny_id", "ks": [1],
              "ci_resamples": 10}
    if setting is not None:
        config["percent_rule"] = setting
    summary_path = tmp_path / "sum.json"
    evaluation_job.evaluate_benchmark(config, tmp_path, bench, tmp_path / "s.jsonl", summary_path, {})
    summary = json.loads(summary_path.read_text())
    expected = setting is not False
    # the default keeps the pool's two-argument call (test doubles elsewhere take just those)
    assert seen == ([{}] if expected else [{"percent_rule": False}])
    assert summary["math_grading"] == {"percent_rule": expected}
    assert summary["pass@1"] == (1.0 if expected else 0.0)  # "50" for gold "0.5"


def test_evaluate_refuses_a_non_boolean_rule(tmp_path):
    bench = tmp_path / "tiny_id.jsonl"
    bench.write_text(json.dumps({"id": 1, "prompt": "Half of one?", "gold": "0.5", "kind": "math"}) + "\n")
    config = {"seed": 0, "n_samples": 1, "max_new_tokens": 4, "benchmark": "tiny_id", "ks": [1],
              "percent_rule": "false"}
    with pytest.raises(ConfigError, match=r"^config: percent_rule: 'false' is not true or false$"):
        evaluation_job.evaluate_benchmark(config, tmp_path, bench, tmp_path / "s.jsonl", tmp_path / "sum.json", {})


class _Stop(Exception):
    pass


@pytest.mark.parametrize("setting", [None, False])
def test_grpo_reward_pool_gets_the_rule(tmp_path, monkeypatch, setting):
    import torch

    import giftlab.rewards
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.grpo import train_grpo

    seen = {}

    def fake_pool(**kwargs):  # stop the run where the reward's pool is made
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(giftlab.rewards, "GradingPool", fake_pool)
    cfg = dict(max_steps=1, lr=1e-3, num_generations=2, prompts_per_generation=2, prompts_per_update=2,
               max_completion_length=4, grading_timeout=10)
    if setting is not None:
        cfg["percent_rule"] = setting
    rows = [{"question": "Start with 1. Add 1. What is the result?", "final_answer": "2"}] * 2
    with pytest.raises(_Stop):
        train_grpo(init_path="unused", load_model=lambda path: torch.nn.Linear(1, 1), tokenizer=build_tokenizer(),
                   rl_rows=rows, cfg=cfg, seed=0, out_dir=tmp_path / "out", work_dir=tmp_path / "work", job_config={})
    assert seen["percent_rule"] is (setting is not False)
