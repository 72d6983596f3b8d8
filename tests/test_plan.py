"""giftlab.plan: the grid as data; the rules look runs up by id and ask the plan for jobs, inputs and targets."""

from __future__ import annotations

import math
import re

import pytest

from giftlab.config import RUN_PATTERN, deep_merge, load_config
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
    assert list(runs) == ["sft", "gift-b1", "gift-binf", "dft", "direct_sft", "direct_rl", "luffy", "relift"]
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
    # which problems the dynamics evaluate is in the tracking runs' jobs only: changing it reruns exactly those
    assert plan.job("grpo", {"backbone": "qwen", "run": "gift-b1"})["grpo"]["eval_subset"] == "random"
    assert "eval_subset" not in plan.job("grpo", {"backbone": "qwen", "run": "dft"})["grpo"]
    pre = plan.job("evaluate_pre_rl", {"stage": "sft", "backbone": "qwen", "run": "sft"})
    assert set(pre["benchmarks"]) == set(plan.benchmarks("reasoning"))
    with pytest.raises(KeyError, match="no job config for rule 'nope'"):
        plan.job("nope")


def test_every_phase_has_outputs_and_rules(plan):
    for phase in PHASE_RULES:
        assert plan.phase_outputs(phase), phase
    assert plan.phase_outputs("eval")[1].endswith(".samples.jsonl")


def test_common_smk_is_lookups_only():
    """Logic lives in the library: common.smk stays small, and no .smk file builds a target list itself."""
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert len(common.splitlines()) <= 150
    for smk in [REPO / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]:
        text = smk.read_text()
        assert not re.search(r"\[[^\]\n]*\bfor\b[^\]\n]*\bin\b", text), f"{smk.name}: a comprehension builds a list"
        assert "parse_run" not in text and "split(\"-b\")" not in text, smk.name


def test_rules_that_run_a_command_name_their_inputs_and_outputs():
    """Style: a job's files are named (``{input.val}``, not ``{input[1]}``); rules that only gather targets (phases,
    ``all``) run no command and may list them."""
    unnamed, checked = [], 0
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for rule in re.split(r"\n(?=\s*rule\b)", smk.read_text()):
            if "shell:" not in rule:
                continue
            lines = rule.splitlines()
            for i, line in enumerate(lines):
                block = re.fullmatch(r"(\s+)(input|output):", line)
                if not block:
                    continue
                checked += 1
                for item in lines[i + 1:]:
                    if item.strip() and len(item) - len(item.lstrip()) <= len(block.group(1)):
                        break  # the next directive
                    item = item.strip()
                    if item and not item.startswith("#") and not re.match(r"(\w+\s*=|\*\*)", item):
                        unnamed.append(f"{smk.name}: {lines[0].strip()} {block.group(2)}: {item}")
    assert checked > 30 and not unnamed, unnamed


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


# ---------------------------------------------------------------- the unified paradigms (LUFFY, ReLIFT)

def test_unified_runs_are_grpo_from_the_base_with_their_rl_method(plan):
    from giftlab.rl_methods import RL_METHODS, get_method

    assert plan.config["unified"]["methods"] == ["luffy", "relift"]  # params.yaml's default
    assert plan.unified_runs() == ["luffy", "relift"] and list(plan.runs)[-3:] == ["direct_rl", "luffy", "relift"]
    for name in ("luffy", "relift"):
        spec = plan.runs[name]
        assert (spec.method, spec.beta, spec.sft, spec.rl, spec.rl_method) == (None, None, False, True, name)
        assert spec.strategy == name and not spec.compared and not plan.tracks_dynamics(name)
        assert plan.grpo_init("qwen", name) == (["models/base/qwen"], "models/base/qwen")
        record = plan.run_table()[name]
        assert (record["label"], record["method_class"], record["order"], record["rl_method"]) == \
            (RL_METHODS[name].label, "Unified Paradigms", None, name)
        job = plan.job("grpo", {"backbone": "llama", "run": name})
        assert (job["rl_method"], job["solution_key"], job["sft_epoch"]) == (name, "r1_solution_1", None)
        assert job["method_params"] == get_method(name).check(plan.config["unified"].get(name))
        assert not any(k.startswith("eval_") for k in job["grpo"])
    assert plan.job("grpo", {"backbone": "qwen", "run": "relift"})["method_params"]["sft_batch"] == 8  # params.yaml
    # final models of Tables 1-2 (and evaluated on every benchmark), in no SFT-vs-GIFT analysis
    assert {("rl", "luffy"), ("rl", "relift")} <= set(plan.final_models())
    assert plan.eval_summary("rl", "qwen", "luffy", "tiny_ood") in plan.final_evals("ood")
    compared_only = [*plan.pre_rl_evals(), *plan.consistency_results(), *plan.fig1_inputs()["rl_evals"],
                     *plan.main_rl_evals(), *(run for _, run, _ in plan.rl_gain_pairs())]
    assert not [p for p in compared_only if "luffy" in p or "relift" in p]
    assert "models/rl/qwen/relift" in plan.phase_outputs("grpo")
    assert re.fullmatch(RUN_PATTERN, "luffy") and re.fullmatch(RUN_PATTERN, "relift")


def test_unified_runs_leave_every_other_job_config_as_it_was(plan):
    """Adding the unified runs changes no existing training, evaluation or analysis job (their params would rerun
    them): every job of the grid without ``unified`` is byte for byte the same job with it."""
    import json

    without = Plan({k: v for k, v in plan.config.items() if k != "unified"})
    assert not without.unified_runs() and set(without.runs) == set(plan.runs) - {"luffy", "relift"}
    same = lambda rule, wildcards: (json.dumps(plan.job(rule, wildcards), sort_keys=True)
                                    == json.dumps(without.job(rule, wildcards), sort_keys=True))
    for bb in plan.backbones:
        for run in without.rl_runs():
            assert same("grpo", {"backbone": bb, "run": run}), run
            assert set(plan.job("grpo", {"backbone": bb, "run": run})) == {"seed", "backbone", "run", "sft_epoch",
                                                                           "grpo"}
        for run in without.sft_runs():
            assert same("sft", {"backbone": bb, "run": run}), run
        for stage, run in without.final_models():
            rule = "evaluate" if stage == "rl" else "evaluate_direct_sft"
            assert same(rule, {"stage": stage, "backbone": bb, "run": run}), run
        for run in without.compared_runs():
            assert same("evaluate_pre_rl", {"stage": "sft", "backbone": bb, "run": run}), run
            assert same("consistency", {"backbone": bb, "run": run, "pair": "sft_rl"}), run
    assert all(without.run_table()[r] == plan.run_table()[r] for r in without.runs)  # records of old runs too


def test_table5_judges_every_sft_then_rl_final_policy(plan):
    """MT-Bench (Table 5): the paper's rows are the SFT-then-RL strategies; no Direct baseline, no unified run."""
    runs = ["sft", "gift-b1", "gift-binf", "dft"]
    assert plan.mtbench_models() == [(bb, r) for bb in plan.backbones for r in runs]
    assert 5 in plan.tables() and "results/tables/table5.md" in plan.all_targets()
    assert plan.table_inputs(5) == [f"results/mtbench/scores/{bb}/{r}.json" for bb in plan.backbones for r in runs]
    answer = plan.job("mtbench_answer", {"backbone": "qwen", "run": "dft"})
    # sampled as MT-Bench does (per category), on the evaluation's engine
    assert (answer["stage"], answer["max_new_tokens"], answer["temperatures"]["math"]) == ("rl", 96, 0.0)
    assert answer["backend"] == plan.config["eval"]["backend"] and "n_samples" not in answer
    assert plan.job("mtbench_judge", {"backbone": "qwen", "run": "dft"})["judge"] == {"kind": "rubric"}
    outputs = plan.phase_outputs("mtbench")
    assert outputs[0] == "data/mtbench/tiny_questions.jsonl" and "results/mtbench/scores/qwen/dft.json" in outputs


def test_table5_is_planned_only_where_the_config_asks():
    off = Plan(deep_merge(load_config(PARAMS), {"mtbench": {"enabled": False}}))
    assert off.tables() == (1, 2, 3, 4) and not off.mtbench_models() and off.phase_outputs("mtbench") == []
    assert not any("table5" in t for t in off.all_targets())
    # mtbench.methods: the rows of those objectives only (every β of GIFT), and only their answers are planned
    some = Plan(deep_merge(load_config(PARAMS), {"mtbench": {"methods": ["sft", "gift"]}}))
    assert some.mtbench_models() == [(bb, r) for bb in some.backbones for r in ["sft", "gift-b1", "gift-b3", "gift-b10"]]
    assert not any("/dft." in p for p in some.phase_outputs("mtbench"))
    paper = Plan(load_config(PARAMS, REPO / "config" / "paper.yaml"))
    # the paper reads local copies of FastChat's files: DAG inputs, so a missing one stops the plan naming it
    assert paper.mtbench_questions() == ["data/mt_bench/question.jsonl", "data/mt_bench/reference_answer/gpt-4.jsonl"]
    assert not any(p.startswith("data/mtbench/") for p in paper.phase_outputs("mtbench"))
    judge = paper.job("mtbench_judge", {"backbone": "qwen", "run": "gift-b3"})["judge"]
    assert (judge["kind"], judge["model"]) == ("openai", "gpt-4")
    assert paper.runtime("mtbench_judge")["judge"]["api_key_env"] == "OPENAI_API_KEY"  # beside it (runtime_keys)


def test_settings_that_change_no_result_stay_out_of_job_configs_and_reach_the_jobs_beside_them(tmp_path):
    # Trackers, GRPO's checkpoint interval and the grading processes were part of the job configs, so changing one
    # (turning W&B on mid-grid, checkpointing more often on a preemptible queue) retrained every run.
    import argparse
    import json

    from giftlab.cli import ConfigError, setup
    from giftlab.plan import RUNTIME_RULES
    from giftlab.runtime_keys import without_runtime

    judge = {"timeout_s": 30, "max_retries": 2, "max_in_flight": 1, "api_key_env": "JUDGE_KEY", "cache": "c.jsonl"}
    runtime = {"sft": {"report_to": ["tensorboard", "wandb"]}, "grpo": {"report_to": [], "save_steps": 5},
               "eval": {"grading_workers": 3, "code_workers": 4, "save_every_prompts": 512},
               "mtbench": {"judge": judge}}
    for profile in ([], [REPO / "config" / "paper.yaml"]):
        config = load_config(REPO / "params.yaml", *profile)
        plain, changed = Plan(config), Plan(deep_merge(config, runtime))
        assert plain.recorded_configs() == changed.recorded_configs()  # no job config, so no rerun
        assert changed.runtime("sft") == {"settings": runtime["sft"]}
        assert changed.runtime("grpo") == {"grpo": runtime["grpo"]}
        for rule in ("evaluate", "evaluate_pre_rl"):
            settings = changed.runtime(rule)["benchmarks"]
            assert settings and all(s == runtime["eval"] for s in settings.values())
        # how the MT-Bench judge is reached, not which judge: a slow server's timeout re-judged every model
        assert changed.runtime("mtbench_judge") == {"judge": judge}
        assert set(RUNTIME_RULES) >= {"sft", "grpo", "evaluate", "evaluate_extra", "mtbench_judge"}
    # the job reads them merged into its config, and records what it ran with; the comparison leaves them out
    changed = Plan(deep_merge(load_config(REPO / "params.yaml"), runtime))
    job = changed.job("sft", {"backbone": "qwen", "run": "gift-b3"})
    (tmp_path / "sft.json").write_text(json.dumps(changed.runtime("sft")))
    merged = setup(argparse.Namespace(config=json.dumps(job), runtime=str(tmp_path / "sft.json")), torch_threads=False)
    assert merged["settings"]["report_to"] == ["tensorboard", "wandb"] and without_runtime(merged) == job
    with pytest.raises(ConfigError, match=r"^--runtime: no such file .*missing\.json$"):  # run without its file
        setup(argparse.Namespace(config=json.dumps(job), runtime=str(tmp_path / "missing.json")), torch_threads=False)
    grpo = changed.job("grpo", {"backbone": "qwen", "run": "gift-b3"})
    assert without_runtime({**grpo, "grpo": {**grpo["grpo"], "save_steps": 5}}) == grpo
    judging = changed.job("mtbench_judge", {"backbone": "qwen", "run": "gift-b3"})
    assert judging["judge"] == {"kind": "rubric"}
    assert without_runtime({**judging, "judge": {**judging["judge"], **judge}}) == judging
    paper = Plan(load_config(REPO / "params.yaml", REPO / "config" / "paper.yaml"))
    judging = paper.job("mtbench_judge", {"backbone": "qwen", "run": "gift-b3"})["judge"]  # which judge stays
    assert {"kind", "model", "base_url", "temperature", "max_tokens"} <= set(judging) and not set(judging) & set(judge)


def test_figure1_draws_only_the_backbones_the_grid_builds():
    """figures.backbones restricts every phase; Figure 1's own list (the paper profile's [llama, qwen]) must not bring
    back a backbone the grid left out (before: Llama's SFT, GRPO and evaluation of every compared run were planned
    for Figure 1 alone, 8-GPU jobs, under `figures.backbones: [qwen]`)."""
    paper = load_config(PARAMS, REPO / "config" / "paper.yaml")
    plan = Plan(deep_merge(paper, {"figures": {"backbones": ["qwen"]}}))
    assert plan.fig1_backbones() == ["qwen"]
    inputs = plan.fig1_inputs()
    assert inputs["sft_metrics"] and all("/llama/" not in p for p in inputs["sft_metrics"] + inputs["rl_evals"])
    assert plan.job("figure1")["backbones"] == ["qwen"]
    assert Plan(paper).fig1_backbones() == ["llama", "qwen"]  # the whole grid: the paper's panel order


def test_every_pre_rl_evaluation_is_checked_against_its_config(tmp_path):
    """evaluate_pre_rl writes the six reasoning benchmarks (rl_gain pairs them all with their post-RL scores), but
    the files checked for another config's provenance (giftlab.stale, scripts/verify.py) and the eval phase's
    outputs listed only Table 3's four math ones: a HumanEval+/MBPP+ result made under other settings passed."""
    import json

    from giftlab.stale import foreign_outputs

    paper = load_config(PARAMS, REPO / "config" / "paper.yaml")
    plan = Plan(paper)
    path = "results/eval/sft/qwen/gift-b10/humaneval_plus.summary.json"
    assert path in plan.phase_outputs("eval") and path.replace(".summary.json", ".samples.jsonl") in \
        plan.phase_outputs("eval")
    recorded = {p: job for p, _, job in plan.recorded_configs()}
    assert recorded[path]["n_samples"] == 8  # eval.pre_rl's sampling
    foreign = {**recorded[path], "n_samples": 4}
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(json.dumps({"provenance": {"config": foreign}}))
    problems = foreign_outputs(plan.recorded_configs(), tmp_path, strict=True)
    assert len(problems) == 1 and problems[0].startswith(path) and "n_samples: 4 → 8" in problems[0]


def test_sft_stops_early_only_where_its_schedule_is_longer_than_what_is_read(plan):
    """params.yaml trains sft.rl_epoch = sft.epochs: no job config names a stop (tiny outputs stay as they were);
    where rl_epoch < epochs, a run outside Figure 1 stops there and Figure 1's runs train every epoch."""
    assert all("stop_epoch" not in plan.job("sft", {"backbone": bb, "run": r})["settings"]
               for bb in plan.backbones for r in plan.sft_runs())
    longer = Plan(deep_merge(plan.config, {"sft": {"epochs": 5, "rl_epoch": 2}}))
    outside = [r for r in longer.sft_runs() if r not in longer.compared_runs()]
    assert outside and longer.compared_runs()
    for bb in longer.backbones:
        assert all(longer.job("sft", {"backbone": bb, "run": r})["settings"]["stop_epoch"] == 2 for r in outside)
        assert all("stop_epoch" not in longer.job("sft", {"backbone": bb, "run": r})["settings"]
                   for r in longer.compared_runs())


def test_a_target_naming_a_run_or_backbone_outside_the_config_says_so():
    from giftlab.plan import UnknownName

    plan = Plan(load_config(REPO / "params.yaml"))
    with pytest.raises(UnknownName) as exc:
        plan.sft_train_files("sft_lxs")
    assert str(exc.value).startswith("run 'sft_lxs' is not in this config's grid (its runs: sft, ")
    with pytest.raises(UnknownName, match=r"^backbone 'qwne' is not in this config \(its backbones: qwen"):
        plan.job("pretrain_base", {"backbone": "qwne"})
    with pytest.raises(UnknownName, match=r"^backbone 'qwne' is not in this config"):
        plan.base_inputs("qwne")


@pytest.mark.parametrize("seeds", [None, [1234, 4]])
def test_the_eval_rules_patterns_pick_the_rule_the_plan_records(plan, seeds):
    """Snakemake picks an evaluation's rule by EVAL_RULES' wildcard patterns, the plan by the run's record
    (Plan.eval_rule, which `stale` and verify compare against): for every evaluation of the grid exactly one
    pattern matches, and it is the plan's rule (a run id the patterns misread would run with another job config)."""
    from giftlab.config import EVAL_RULES

    seeded = Plan(deep_merge(plan.config, {"seeds": seeds})) if seeds else plan
    evaluations = 0
    for path, rule, _ in seeded.recorded_configs():
        found = re.fullmatch(r"results/eval/(sft|rl)/([a-z0-9_]+)/([^/]+)/[a-z0-9_]+\.summary\.json", path)
        if not found:
            continue
        stage, _, run = found.groups()
        matching = [name for name, spec in EVAL_RULES.items()
                    if spec["stage"] == stage and re.fullmatch(spec["run"], run)]
        assert matching == [rule] == [seeded.eval_rule(stage, run)], path
        evaluations += 1
    assert evaluations > 20
