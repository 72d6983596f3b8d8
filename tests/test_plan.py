"""giftlab.plan: the grid as data; the rules look runs up by id and ask the plan for jobs, inputs and targets."""

from __future__ import annotations

import math
import re

import pytest

from giftlab.config import deep_merge, load_config
from giftlab.objectives import OBJECTIVES
from giftlab.plan import PHASE_RULES, Plan
from helpers import REPO

PARAMS = REPO / "params.yaml"


@pytest.fixture(scope="module")
def plan():
    config = deep_merge(load_config(PARAMS), {"sft": {"methods": ["sft", "gift", "dft"], "gift_betas": [1, "inf"],
                                                      "direct_sft": True}, "grpo": {"direct_rl": True}})
    return Plan(config)


def test_runs_are_records_not_names(plan):
    runs = plan.runs
    assert list(runs) == ["sft", "gift-b1", "gift-binf", "dft", "direct_sft", "direct_rl"]
    assert (runs["gift-b1"].method, runs["gift-b1"].beta) == ("gift", 1.0)
    assert runs["gift-binf"].beta == math.inf and runs["dft"].beta is None
    assert runs["direct_sft"].method == "sft" and not runs["direct_sft"].rl and runs["direct_sft"].final_stage == "sft"
    assert not runs["direct_rl"].sft and runs["direct_rl"].method is None
    assert plan.compared_runs() == ["sft", "gift-b1", "gift-binf"]  # the SFT-vs-GIFT analyses
    assert plan.run_table()["gift-b1"] == {"strategy": "gift", "method": "gift", "beta": 1.0, "final_stage": "rl",
                                           "label": "GIFT", "order": list(OBJECTIVES).index("gift")}
    assert plan.run_table()["direct_sft"]["strategy"] == "direct_sft"  # trained by plain SFT, its own row


def test_models_and_jobs_come_from_the_run_records(plan):
    assert plan.grpo_init("qwen", "direct_rl") == (["models/base/qwen"], "models/base/qwen")
    epoch = plan.config["sft"]["rl_epoch"]
    assert plan.grpo_init("qwen", "gift-b1") == (["models/sft/qwen/gift-b1"], f"models/sft/qwen/gift-b1/epoch_{epoch}")
    sft = plan.job("sft", {"backbone": "qwen", "run": "gift-b1"})
    assert (sft["method"], sft["beta"], sft["run"]) == ("gift", 1.0, "gift-b1")
    assert plan.job("sft", {"backbone": "qwen", "run": "direct_sft"})["method"] == "sft"
    assert plan.job("grpo", {"backbone": "qwen", "run": "direct_rl"})["sft_epoch"] is None
    assert "eval_every" not in plan.job("grpo", {"backbone": "qwen", "run": "dft"})["grpo"]  # no Figure 3 dynamics
    pre = plan.job("evaluate_pre_rl", {"stage": "sft", "backbone": "qwen", "run": "sft"})
    assert set(pre["benchmarks"]) == set(plan.benchmarks("reasoning"))
    with pytest.raises(KeyError, match="no job config for rule 'nope'"):
        plan.job("nope")


def test_every_phase_has_outputs_and_rules(plan):
    for phase in PHASE_RULES:
        assert plan.phase_outputs(phase, ["tiny_id"]), phase
    assert plan.phase_outputs("eval")[1].endswith(".samples.jsonl")


def test_common_smk_is_lookups_only():
    """Logic lives in the library: common.smk stays small, and no .smk file builds a target list itself."""
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert len(common.splitlines()) <= 150
    for smk in [REPO / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]:
        text = smk.read_text()
        assert not re.search(r"\[[^\]\n]*\bfor\b[^\]\n]*\bin\b", text), f"{smk.name}: a comprehension builds a list"
        assert "parse_run" not in text and "split(\"-b\")" not in text, smk.name


def test_nothing_reads_a_hyperparameter_back_from_a_run_id_or_path():
    """Run ids are made in one place (giftlab.grid.run_name) and only ever used as keys: no regex over a run id, no
    split on '-b', no parser of result paths anywhere in the library, the scripts or the rules."""
    suspicious = re.compile(r"parse_run|beta_of|split_run|_RUN_RE|-b\(\?P|\.split\(\"-b\"\)|rsplit\(\"-b|"
                            r"\.replace\(\"\.summary\.json\"")
    files = [*(REPO / "src").rglob("*.py"), *(REPO / "scripts").rglob("*.py"), REPO / "Snakefile",
             *(REPO / "workflow" / "rules").glob("*.smk")]
    offenders = [f"{f.relative_to(REPO)}:{i}" for f in files for i, line in enumerate(f.read_text().splitlines(), 1)
                 if suspicious.search(line)]
    assert not offenders, offenders
