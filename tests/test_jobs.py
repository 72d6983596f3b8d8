"""giftlab.jobs: every job the plans make parses into its script's dataclass; bad keys fail in one line."""

from __future__ import annotations

import pytest

from giftlab.cli import ConfigError
from giftlab.config import EVAL_RULES, load_config
from giftlab.jobs import JOBS, ConsistencyJob, EvalSettings, TableJob
from giftlab.plan import STAGE_PAIRS, Plan
from helpers import REPO

PROFILES = [None, "smoke", "mini", "replication", "paper", "rehearsal", "reference_check_cached"]
# profiles that are overlays of others (config files in the order Snakemake gets them, after params.yaml)
OVERLAYS = {"rehearsal": ["paper", "rehearsal"],
            "reference_check_cached": ["mini", "reference_check", "reference_check_cached"]}


def plan_of(profile):
    files = [REPO / "params.yaml"]
    files += [REPO / "config" / f"{name}.yaml" for name in OVERLAYS.get(profile, [profile] if profile else [])]
    return Plan(load_config(*files))


def every_job(plan):
    """(rule, wildcards) of every job of the grid that a script parses."""
    bbs = plan.backbones
    yield "split", {}
    for bb, split in plan.reference_cache_keys():
        yield "reference_cache", {"backbone": bb, "split": split}
    for bb in bbs:
        for run in plan.sft_runs():
            yield "sft", {"backbone": bb, "run": run}
        for run in plan.rl_runs():
            yield "grpo", {"backbone": bb, "run": run}
        for run in plan.compared_runs():
            for pair in STAGE_PAIRS:
                yield "consistency", {"backbone": bb, "run": run, "pair": pair}
    for n in plan.tables():
        yield "table", {"n": str(n)}
    if plan.mtbench and plan.config["mtbench"]["questions"] == "tiny":
        yield "mtbench_questions", {}
    for bb, run in plan.mtbench_models():
        yield "mtbench_answer", {"backbone": bb, "run": run}
        yield "mtbench_judge", {"backbone": bb, "run": run}
    for rule in ("figure1", "figure2", "figure3", "claims", "summary", "rl_gain"):
        yield rule, {}


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "params")
def test_every_planned_job_parses_into_its_dataclass(profile):
    plan = plan_of(profile)
    seen = set()
    for rule, wildcards in every_job(plan):
        JOBS[rule].from_config(plan.job(rule, wildcards), where=f"{rule} {wildcards}")
        seen.add(rule)
    mtbench = {"mtbench_answer", "mtbench_judge"} if plan.mtbench else set()
    if plan.mtbench and plan.config["mtbench"]["questions"] == "tiny":
        mtbench.add("mtbench_questions")
    cached = {"reference_cache"} if plan.reference_cache_keys() else set()
    assert seen == {r for r in JOBS if not r.startswith("mtbench_") and r != "reference_cache"} | mtbench | cached
    assert bool(cached) == (profile == "reference_check_cached")
    # every profile that can judge plans Table 5 (the seed study leaves it out: its questions are Tables 1-4's)
    assert profile in ("rehearsal", "replication", "reference_check_cached") or plan.mtbench
    for rule, spec in EVAL_RULES.items():  # each benchmark of each evaluation job
        job = plan.job(rule, {"stage": spec["stage"], "backbone": plan.backbones[0], "run": "sft"})
        common = {k: v for k, v in job.items() if k != "benchmarks"}
        for name, settings in job["benchmarks"].items():
            parsed = EvalSettings.for_benchmark({**common, **settings, "benchmark": name})
            assert parsed.benchmark == name and parsed.max_new_tokens > 0


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "params")
def test_the_on_demand_jobs_of_models_extra_parse(profile):
    """extra.smk's jobs (outside `rule all`, so not in every_job): each profile plus one models.extra checkpoint."""
    files = [REPO / "params.yaml"]
    files += [REPO / "config" / f"{name}.yaml" for name in OVERLAYS.get(profile, [profile] if profile else [])]
    config = load_config(*files)
    config.setdefault("models", {})["extra"] = {"colleague": {"path": "/elsewhere/ckpt",
                                                              "backbone": next(iter(config["backbones"]))}}
    plan = Plan(config)
    ConsistencyJob.from_config(plan.job("consistency_extra", {"name": "colleague"}))
    assert TableJob.from_config(plan.job("table_extra")).table == "extra"
    job = plan.job("evaluate_extra", {"name": "colleague"})
    common = {k: v for k, v in job.items() if k != "benchmarks"}
    assert set(job["benchmarks"]) == set(plan.benchmarks("all"))
    for name, settings in job["benchmarks"].items():
        assert EvalSettings.for_benchmark({**common, **settings, "benchmark": name}).benchmark == name

def test_a_misspelt_missing_or_mistyped_key_is_one_line():
    with pytest.raises(ConfigError, match=r"^config: topK: not a key of the consistency job \(one of "):
        ConsistencyJob.from_config({"stage_pair": "base_sft", "topK": [1]})
    with pytest.raises(ConfigError, match=r"^config: stage_pair: missing \(the consistency job needs it\)$"):
        ConsistencyJob.from_config({"seed": 1})
    with pytest.raises(ConfigError, match=r"^config: max_length: '1024' is not an integer$"):
        ConsistencyJob.from_config({"stage_pair": "base_sft", "max_length": "1024"})
    with pytest.raises(ConfigError, match=r"ks \[1, 16\]: every k must be in \[1, n_samples = 8\]"):
        EvalSettings.from_config({"benchmark": "tiny_id", "max_new_tokens": 8, "ks": [1, 16]})
    with pytest.raises(ConfigError, match=r"^config: save_every_prompts must be >= 0, got -1$"):
        EvalSettings.from_config({"benchmark": "tiny_id", "max_new_tokens": 8, "save_every_prompts": -1})
    with pytest.raises(ConfigError, match=r"^config: dtype: 16 is not a string or null$"):
        ConsistencyJob.from_config({"stage_pair": "base_sft", "dtype": 16})
    assert TableJob.from_config({"table": 3, "threads": 2}).ks == [1, 2, 4, 8]  # threads: read by cli.setup


def test_a_unified_run_s_grpo_job_names_its_method_and_plain_grpo_jobs_do_not():
    from giftlab.jobs import GRPOJob
    from giftlab.rl_methods import get_method

    plan = plan_of("paper")
    luffy = GRPOJob.from_config(plan.job("grpo", {"backbone": "qwen", "run": "luffy"}))
    assert (luffy.rl_method, luffy.solution_key, luffy.sft_epoch) == ("luffy", "r1_solution_1", None)
    assert luffy.method_params == dict(get_method("luffy").defaults)  # the paper profile: the released settings
    plain = GRPOJob.from_config(plan.job("grpo", {"backbone": "qwen", "run": "direct_rl"}))
    assert (plain.rl_method, plain.method_params, plain.solution_key) == ("grpo", {}, None)
