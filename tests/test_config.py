import math
import re

import pytest

from giftlab.cli import ConfigError
from giftlab.config import (RUN_PATTERN, benchmarks, deep_merge, eval_settings, load_config, run_name,
                            validate_config)
from giftlab.plan import Plan
from helpers import REPO, paper_hub_cache, snakemake, write_override

PARAMS = REPO / "params.yaml"
PROFILES = sorted((REPO / "config").glob("*.yaml"))


@pytest.mark.parametrize("profile", [None, *PROFILES], ids=lambda p: "params" if p is None else p.name)
def test_every_profile_validates(profile):
    paths = [PARAMS] + ([profile] if profile else [])
    config = load_config(*paths)
    assert Plan(config).sft_runs()


def test_run_names_are_made_in_one_place():
    assert run_name("sft") == "sft"
    assert run_name("gift", 10) == "gift-b10"
    assert run_name("gift", 0.5) == "gift-b0.5"
    assert run_name("gift", math.inf) == "gift-binf"
    # every β gets its own id, and every id is one the Snakefile's `run` wildcard matches (1e6 was "gift-b1e+06":
    # a run the plan asked for and no rule could make)
    ids = [run_name("gift", b) for b in (1e6, 1e-5, 1.2345671, 1.2345674, 3.0, 0.1 + 0.2)]
    assert ids[:3] == ["gift-b1000000", "gift-b0.00001", "gift-b1.2345671"] and len(set(ids)) == len(ids)
    assert all(re.fullmatch(RUN_PATTERN, i) for i in ids)


def test_grid_expands_betas_and_filters_rl_runs():
    config = load_config(PARAMS)
    config = deep_merge(config, {"sft": {"methods": ["sft", "gift"], "gift_betas": [1, 3], "direct_sft": True},
                                 "grpo": {"runs": ["gift-b3"], "direct_rl": True}})
    plan = Plan(config)
    assert plan.sft_runs() == ["sft", "gift-b1", "gift-b3", "direct_sft"]
    # Direct SFT never goes to RL; grpo.runs selects among the SFT runs, the unified runs (unified.methods) stay
    assert plan.rl_runs() == ["gift-b3", "direct_rl", "luffy", "relift"]
    assert plan.final_models() == [("rl", "gift-b3"), ("rl", "direct_rl"), ("rl", "luffy"), ("rl", "relift"),
                                   ("sft", "direct_sft")]
    assert (plan.runs["direct_sft"].method, plan.runs["direct_sft"].beta) == ("sft", None)
    assert plan.runs["gift-b3"].beta == 3.0 and plan.sft_train_files("direct_sft") == ["data/splits/sft.jsonl",
                                                                                       "data/splits/rl.jsonl"]
    assert plan.compared_runs() == ["gift-b3"] and not plan.runs["direct_rl"].sft
    assert benchmarks(config, "ood") == ["tiny_ood", "tiny_family", "tiny_mc"]
    assert benchmarks(config, "reasoning") == ["tiny_id"]


BAD = [
    ({"sft": {"methods": ["sft", "magic"]}}, "sft.methods[1]"),
    ({"sft": {"gift_betas": [3, -1]}}, "sft.gift_betas[1]"),
    ({"sft": {"epochs": "three"}}, "sft.epochs"),
    ({"eval": {"n_samples": 0}}, "eval.n_samples"),
    ({"sft": {"rl_epoch": 9}}, "sft.rl_epoch"),
    ({"figures": {"fig1": {"backbones": ["gpt"]}}}, "figures.fig1.backbones"),
    # Figure 1 draws only backbones the grid builds (Plan.fig1_backbones): none of them left it without a panel
    ({"figures": {"backbones": ["qwen"], "fig1": {"backbones": ["llama"]}}},
     "figures.fig1.backbones: none of ['llama'] is in figures.backbones"),
    ({"eval": {"ood": ["mmlu"]}}, "eval.ood"),
    ({"eval": {"math": ["tiny_ood"]}}, "eval.math"),
    ({"eval": {"math": ["gsm8k"]}}, "eval.math"),
    ({"eval": {"per_benchmark": {"aime": {"n_samples": 4}}}}, "eval.per_benchmark"),
    ({"eval": {"report_metric": {"gpt": {"tiny_id": "pass@1"}}}}, "eval.report_metric"),
    ({"eval": {"report_metric": {"qwen": {"tiny_id": "pass@64"}}}}, "eval.report_metric.qwen.tiny_id"),
    ({"eval": {"report_metric": {"qwen": {"tiny_id": "best"}}}}, "eval.report_metric.qwen.tiny_id"),
    # names that select part of the grid: a typo would silently drop runs, benchmarks or settings
    ({"grpo": {"runs": ["gift-b30"]}}, "grpo.runs"),
    ({"eval": {"benchmarks": ["tiny_id", "aime2024"], "ood": []}}, "eval.benchmarks"),
    ({"eval": {"per_benchmark": {"tiny_id": {"n_sample": 4}}}}, "eval.per_benchmark.tiny_id.n_sample"),
    ({"eval": {"pre_rl": {"n_samples": 4}}}, "eval.pre_rl"),
    ({"eval": {"ks": [1, 16]}}, "eval"),
    ({"sft": {"objective_params": {"gfit": {"beta": 3}}}}, "sft.objective_params"),
    ({"sft": {"objective_params": {"gift": {"variant": "exct"}}}}, "sft.objective_params.gift"),
    ({"sft": {"objective_params": {"asft": {"lamda": 0.1}}}}, "sft.objective_params.asft"),
    ({"sft": {"objective_params": {"gift": {"beta": 3}}}}, "sft.objective_params.gift.beta"),
    # the cached reference bounds r's error in total variation only: reverse-KL ASFT weighs every tail log-prob
    ({"sft": {"reference": "cached", "objective_params": {"asft": {"kl_direction": "reverse"}}}},
     "sft.reference: cached with sft.objective_params.asft: kl_direction: reverse"),
    ({"figures": {"backbone": ["qwen"]}}, "figures"),
    ({"figures": {"fig1": {"backbone": ["qwen"]}}}, "figures.fig1"),
    ({"models": {"extra": {"mine": {"path": "x", "backbone": "qwenn"}}}}, "models.extra.mine.backbone"),
    ({"world": {"n_problem": 100}}, "world.n_problem"),
    ({"backbones": {"qwen": {"hidden_sizes": 64}}}, "backbones.qwen"),
    # a SLURM job's counts (sbatch took `-t -5` as a limit of 5,000 years) and where a GPU type is asked for
    ({"resources": {"evaluate": {"runtime": -5}}}, "resources.evaluate.runtime: -5 is not a positive number"),
    ({"resources": {"default": {"mem_mb": 0}}}, "resources.default.mem_mb: 0 is not a positive number"),
    ({"resources": {"sft": {"runtme": 720}}}, "resources.sft.runtme: not a resource Snakemake or its SLURM plugin"
                                             " reads (did you mean 'runtime'?)"),
    ({"resources": {"grpo": {"slurm_partiton": "h200"}}}, "did you mean 'slurm_partition'?"),
    ({"resources": {"default": {"partition": "h200"}}}, "resources.default.partition: not a resource Snakemake or its "
                                                        "SLURM plugin reads (did you mean 'slurm_partition'?)"),
    # the paper's --signal=TERM@1200 on sft: a runtime of 20 min or less signals the job as it starts
    ({"resources": {"sft": {"runtime": 3, "slurm_extra": "--signal=TERM@1200"}}},
     "resources.sft.runtime: 3 leaves no time before slurm_extra's --signal=TERM@1200 (SLURM signals the job 1200 s "
     "before its time limit): a runtime above 21 min, or a shorter --signal lead"),
    ({"resources": {"default": {"slurm_extra": "--signal=B:USR1@600"}, "grpo": {"runtime": "10m"}}},
     "resources.grpo.runtime: '10m' leaves no time"),
    ({"resources": {"sft": {"slurm_extra": "--signal=TERM@1200 --gres=gpu:a100:8"}}},
     "resources.sft.slurm_extra: the SLURM plugin refuses --gres / --gpus there"),
    ({"seed": 4294967296}, "seed: 4294967296 is greater than the maximum of 4294967295"),
    ({"seeds": [1, 4294967296]}, "seeds[1]: 4294967296 is greater than the maximum of 4294967295"),
    # a tiny base's attention shape: one line before the pretraining job (transformers failed deep inside it)
    ({"backbones": {"qwen": {"hidden_size": 25, "num_attention_heads": 3}}}, "backbones.qwen.hidden_size: 25 is not"),
    ({"backbones": {"qwen": {"num_attention_heads": 4, "num_key_value_heads": 3}}},
     "backbones.qwen.num_key_value_heads: num_attention_heads (4) is not divisible by 3"),
    ({"backbones": {"qwen": {"hidden_size": 36, "num_attention_heads": 4}}}, "backbones.qwen: head size hidden_size / num_attention_heads = 9 is odd"),
    # every key a new backbone lacks at once (an if/then's only once the key it depends on is there)
    ({"backbones": {"small": {"source": "tiny", "arch": "qwen2"}}},
     "missing required keys 'backbones.small.hidden_size', 'backbones.small.num_hidden_layers', "
     "'backbones.small.num_attention_heads', 'backbones.small.intermediate_size'"),
    ({"backbones": {"small": {"arch": "qwen2"}}}, "missing required key 'backbones.small.source'"),
    ({"models": {"extra": {"Mine!": {"path": "x"}}}}, "models.extra"),
    ({"models": {"extra": {"mine": {"pth": "x"}}}}, "models.extra.mine"),
    ({"launch": {"sft": "accelerate launch --config_file 'x.yaml"}}, "launch.sft: \"accelerate launch"),
    # MMLU-Redux's own settings: its benchmark only, its error_type labels
    ({"eval": {"per_benchmark": {"gsm8k": {"mmlu_redux_rekey": True}}}}, "eval.per_benchmark.gsm8k.mmlu_redux_rekey"),
    ({"eval": {"per_benchmark": {"mmlu_redux": {"mmlu_redux_keep": ["okay"]}}}},
     "eval.per_benchmark.mmlu_redux.mmlu_redux_keep"),
    ({"eval": {"per_benchmark": {"mmlu_redux": {"mmlu_redux_rekey": "yes"}}}},
     "eval.per_benchmark.mmlu_redux.mmlu_redux_rekey"),
    # one process per GPU: a launch line and the rule's GPUs that disagree
    ({"launch": {"sft": "accelerate launch --num_processes 8"}, "resources": {"sft": {"gpu": 4}}}, "launch.sft"),
    ({"launch": {"grpo": "torchrun --standalone --nproc_per_node=2"}, "resources": {"grpo": {"gpu": 1}}},
     "launch.grpo: starts 2 processes, but resources.grpo.gpu is 1"),
    # vLLM's tensor parallelism within the job's GPUs (the engine failed as it started, after the queue)
    ({"eval": {"backend": "vllm", "vllm": {"tensor_parallel_size": 2}}, "resources": {"evaluate": {"gpu": 1}}},
     "eval.vllm.tensor_parallel_size: 2 GPUs per engine (tiny_id), but resources.evaluate.gpu is 1"),
    ({"eval": {"per_benchmark": {"tiny_ood": {"backend": "vllm", "vllm": {"tensor_parallel_size": 4}}}},
      "resources": {"evaluate": {"gpu": 2}}}, "eval.vllm.tensor_parallel_size: 4 GPUs per engine (tiny_ood)"),
    ({"grpo": {"use_vllm": True, "vllm": {"tensor_parallel_size": 3}}, "resources": {"grpo": {"gpu": 8}},
      "launch": {"grpo": "accelerate launch --num_processes 8"}},
     "grpo.vllm.tensor_parallel_size: 3 does not divide resources.grpo.gpu (8)"),
    # GRPO's update over its processes, at plan time (the job refused it after its wait in the GPU queue)
    ({"launch": {"grpo": "accelerate launch --num_processes 3"}, "resources": {"grpo": {"gpu": 3}}},
     "grpo.prompts_per_update × num_generations"),
    ({"grpo": {"prompts_per_generation": 6, "prompts_per_update": 4}}, "grpo.prompts_per_generation (6)"),
    # the unified paradigms (giftlab.rl_methods): names and each method's keys, checked by the registry
    ({"unified": {"methods": ["lufy"]}}, "unified.methods[0]"),
    ({"unified": {"methods": "luffy"}}, "unified.methods"),
    ({"unified": {"relift": {"sft_bach": 8}}}, "unified.relift.sft_bach"),
    ({"unified": {"relift": {"sft_batch": 0}}}, "unified.relift.sft_batch"),
    ({"unified": {"luffy": {"shaping_gamma": "big"}}}, "unified.luffy.shaping_gamma"),
    ({"unified": {"luffy": {"expert_samples": 8}}}, "unified.luffy.expert_samples"),  # G = 8: none on-policy
    ({"unified": {"methods": [], "relift": {"sft_bach": 8}}}, "unified.relift.sft_bach"),  # checked when not run
    ({"unified": {"grpo": {}}}, "unified.grpo"),
    # ReLIFT's SFT micro-batches are collective: 10 demonstrations over 8 processes, 1 per micro-batch, are 2 on
    # some processes and 1 on others (a hang)
    ({"launch": {"grpo": "accelerate launch --num_processes 8"}, "resources": {"grpo": {"gpu": 8}},
      "unified": {"relift": {"sft_batch": 10, "sft_micro_batch": 1}}},
     "unified.relift.sft_batch: 10 demonstrations over 8 processes give them 1 to 2 micro-batches"),
    # Table 5 (MT-Bench): the judge and the questions
    ({"mtbench": {"judge": {"kind": "human"}}}, "mtbench.judge.kind"),
    ({"mtbench": {"judge": {"kind": "openai"}}}, "mtbench.judge.model"),
    ({"mtbench": {"judge": {"kind": "rubric", "correct": 2, "wrong": 3}}}, "mtbench.judge"),
    ({"mtbench": {"judge": {"kind": "rubric", "modle": "gpt-4"}}}, "mtbench.judge.modle"),
    ({"mtbench": {"questions": "data/mt_bench/question.jsonl"}}, "mtbench.judge.kind"),  # rubric: tiny only
    ({"mtbench": {"temperatures": {"math": -1}}}, "mtbench.temperatures.math"),
    ({"mtbench": {"n_dialogue": 5}}, "mtbench.n_dialogue"),
    ({"mtbench": {"categories": ["writing"]}}, "mtbench.categories[0]"),
    ({"mtbench": {"methods": ["sft", "gfit"]}}, "mtbench.methods: 'gfit' is not one of sft.methods"),
    ({"mtbench": {"methods": []}}, "mtbench.methods"),  # empty: not "every one" by accident
    ({"data": {"source": "deepmath", "path": "x"}, "backbones": {"qwen": {"source": "pretrained", "path": "q"},
                                                                 "llama": {"source": "pretrained", "path": "l"}}},
     "mtbench.questions"),
]


@pytest.mark.parametrize("override,key", BAD, ids=[k for _, k in BAD])
def test_bad_values_name_the_key(override, key):
    config = deep_merge(load_config(PARAMS), override)
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    message = str(err.value)
    assert key in message and "\n" not in message


def test_a_unified_run_id_never_names_another_run(monkeypatch):
    from giftlab.rl_methods import RL_METHODS, RLMethod

    monkeypatch.setitem(RL_METHODS, "dft", RLMethod(name="dft", label="X", method_class="Unified Paradigms",
                                                    defaults={}))
    config = deep_merge(load_config(PARAMS), {"unified": {"methods": ["luffy", "dft"]}})
    with pytest.raises(ConfigError, match=r"^config error: unified\.methods\[1\]: 'dft' is also the id of another"):
        validate_config(config)


def test_the_cached_reference_takes_forward_kl_asft_and_exact_reverse_kl_asft():
    for override in ({"reference": "cached", "objective_params": {"asft": {"kl_direction": "forward"}}},
                     {"reference": "exact", "objective_params": {"asft": {"kl_direction": "reverse"}}},
                     {"reference": "cached", "methods": ["sft", "gift"],  # no ASFT run: nothing to refuse
                      "objective_params": {"asft": {"kl_direction": "reverse"}}}):
        validate_config(deep_merge(load_config(PARAMS), {"sft": override}))


def test_a_launch_starts_as_many_processes_as_its_rule_has_gpus(monkeypatch):
    from giftlab.resources import launch_processes

    monkeypatch.chdir(REPO)  # the launch line's --config_file is read relative to the workspace
    assert launch_processes("TORCH_ELASTIC_SHUTDOWN_TIMEOUT=900 accelerate launch --num_processes 4") == 4
    assert launch_processes("torchrun --standalone --nproc-per-node 2") == 2
    assert launch_processes("accelerate launch --config_file workflow/accelerate/fsdp.yaml") == 8  # the file's
    assert launch_processes("accelerate launch --config_file=workflow/accelerate/fsdp.yaml") == 8
    with pytest.raises(ConfigError, match=r"^config error: launch: .*No closing quotation"):
        launch_processes("accelerate launch --config_file 'workflow/accelerate/fsdp.yaml")
    paper = load_config(PARAMS, REPO / "config" / "paper.yaml")
    for gpus in (4, 8):  # docs/scale.md: 4 GPUs per job need both keys changed
        line = paper["launch"]["sft"].replace("--num_processes 8", f"--num_processes {gpus}")
        validate_config(deep_merge(paper, {"launch": {"sft": line}, "resources": {"sft": {"gpu": gpus}},
                                           "sft": {"grad_accum": 64 // gpus}}))
    with pytest.raises(ConfigError, match=r"^config error: launch\.sft: starts 8 processes, but resources\.sft\.gpu"):
        validate_config(deep_merge(paper, {"resources": {"sft": {"gpu": 4}}}))
    # one process on 8 GPUs (TRL's vLLM is colocated, so a GRPO job has no use for a GPU without a process)
    assert launch_processes("python") == launch_processes("OMP_NUM_THREADS=4 /usr/bin/python3.11") == 1
    assert launch_processes("python -m torch.distributed.run --standalone") is None
    with pytest.raises(ConfigError, match=r"^config error: launch\.grpo: starts one process \(python\), but "
                                          r"resources\.grpo\.gpu is 8"):
        validate_config(deep_merge(paper, {"launch": {"grpo": "python"}}))
    unlaunched = deep_merge(paper, {"launch": {"sft": ""}})
    with pytest.raises(ConfigError, match=r"^config error: launch\.sft \(not set\): starts one process"):
        validate_config(unlaunched)


def test_mmlu_redux_rows_scored_are_set_for_its_job_alone():
    """eval.per_benchmark.mmlu_redux picks MMLU-Redux's scored rows (lm-eval also scores wrong_groundtruth rows
    against their correct_answer): only its evaluation's settings change, and the job parses them."""
    from giftlab.jobs import EvalSettings
    from giftlab.plan import Plan

    paper = load_config(PARAMS, REPO / "config" / "paper.yaml")
    redux = {"mmlu_redux_keep": ["ok", "wrong_groundtruth"], "mmlu_redux_rekey": True}
    config = deep_merge(paper, {"eval": {"per_benchmark": {"mmlu_redux": redux}}})
    validate_config(config)
    before, after = (Plan(c).job("evaluate", {"stage": "rl", "backbone": "qwen", "run": "sft"}) for c in (paper, config))
    changed = {name for name in after["benchmarks"] if after["benchmarks"][name] != before["benchmarks"][name]}
    assert changed == {"mmlu_redux"}
    settings = EvalSettings.from_config(EvalSettings.of_benchmark(after, "mmlu_redux"))
    assert (settings.mmlu_redux_keep, settings.mmlu_redux_rekey) == (["ok", "wrong_groundtruth"], True)
    default = EvalSettings.from_config(EvalSettings.of_benchmark(before, "mmlu_redux"))
    assert (default.mmlu_redux_keep, default.mmlu_redux_rekey) == (["ok"], False)


def test_missing_key_is_named():
    config = load_config(PARAMS)
    del config["grpo"]["lr"]
    with pytest.raises(ConfigError, match=r"missing required key 'grpo\.lr'"):
        validate_config(config)


UNIFIED_TYPO = ({"unified": {"relift": {"sft_bach": 8}}}, "unified.relift.sft_bach")


@pytest.mark.parametrize("override,key", [BAD[0], BAD[1], BAD[2], UNIFIED_TYPO],
                         ids=["unknown method", "negative beta", "wrong type", "unified key"])
def test_snakemake_stops_before_any_job_with_one_line(tmp_path, override, key):
    bad = write_override(tmp_path / "bad.yaml", override)
    result = snakemake(tmp_path, "-n", configfiles=[bad], timeout=120)
    assert result.returncode != 0
    lines = [l for l in (result.stderr + result.stdout).splitlines() if l.strip()]
    errors = [l for l in lines if key in l]
    assert errors, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_eval_settings_merge_pre_rl_and_per_benchmark_without_losing_either():
    cfg = {"n_samples": 4, "ks": [1, 2, 4], "temperature": 0.6, "benchmarks": ["gsm8k", "aime24"],
           "pre_rl": {"n_samples": 8, "ks": [1, 2, 4, 8]},
           "per_benchmark": {"aime24": {"n_samples": 32, "ks": [1, 8, 32], "max_new_tokens": 99}}}
    assert eval_settings(cfg, "gsm8k") == {"n_samples": 4, "ks": [1, 2, 4], "temperature": 0.6}
    assert eval_settings(cfg, "gsm8k", pre_rl=True)["ks"] == [1, 2, 4, 8]
    final = eval_settings(cfg, "aime24")
    assert (final["n_samples"], final["ks"], final["max_new_tokens"]) == (32, [1, 8, 32], 99)
    pre = eval_settings(cfg, "aime24", pre_rl=True)
    assert (pre["n_samples"], pre["ks"]) == (32, [1, 2, 4, 8, 32])  # Table 3's k and AIME's pass@32
    small = {**cfg, "per_benchmark": {"aime24": {"n_samples": 2, "ks": [1]}}}
    assert eval_settings(small, "aime24", pre_rl=True)["n_samples"] == 8  # pre-RL keeps its 8 samples
    assert "per_benchmark" not in final and "pre_rl" not in final  # grid keys never reach a job


def test_math_group_defaults_to_the_reasoning_benchmarks():
    config = load_config(PARAMS)
    assert benchmarks(config, "math") == benchmarks(config, "reasoning") == ["tiny_id"]
    paper = load_config(PARAMS, REPO / "config" / "paper.yaml")
    assert benchmarks(paper, "math") == ["gsm8k", "math500", "aime24", "aime25"]


def test_job_config_files_and_split_rows_fail_in_one_line(tmp_path):
    from giftlab.cli import load_job_config
    from giftlab.data import read_problems

    (tmp_path / "bad.yaml").write_text("sft: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    for name, match in (("bad.yaml", "bad.yaml: not valid yaml"), ("list.yaml", "expected a mapping")):
        with pytest.raises(ConfigError, match=match):
            load_job_config(str(tmp_path / name))
    cases = {"": "no rows", "[1, 2]\n": "row 1: expected a JSON object",
             '{"question": "q"}\n': "row 1: column 'r1_solution_1' is missing or empty",
             '{"question": "q", "r1_solution_1": "s"}\n{"question": "q", "r1_solution_1": null}\n':
                 "row 2: column 'r1_solution_1'",
             # DeepMath's final_answer is text; a number is named as such, not as a missing answer
             '{"question": "q", "r1_solution_1": 2}\n': "row 1: column 'r1_solution_1' holds int 2, not text",
             # a question twice (the split writes each once: an edited or badly copied file) would train twice
             '{"question": "q", "r1_solution_1": "s"}\n{"question": "p", "r1_solution_1": "s"}\n'
             '{"question": "q ", "r1_solution_1": "t"}\n': "row 3: the same question as row 1",
             # a byte that is not UTF-8 is named with its row (it was "'utf-8' codec can't decode", no file)
             '{"question": "q", "r1_solution_1": "s"}\n{"question": "\udcff", "r1_solution_1": "s"}\n':
                 r"row 2: not UTF-8 text \(byte 0xff at column 15\)"}
    for i, (text, match) in enumerate(cases.items()):
        path = tmp_path / f"rows{i}.jsonl"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        with pytest.raises(ValueError, match=f"rows{i}.jsonl: {match}"):
            read_problems(path, ("question", "r1_solution_1"))


def test_yaml_1_2_numbers_are_numbers(tmp_path):
    """`lr: 1e-3` is a number (YAML 1.2); PyYAML, which Snakemake and DVC use, reads YAML 1.1's string."""
    from helpers import snakemake

    override = tmp_path / "lr.yaml"
    override.write_text("sft:\n  lr: 1e-3\n  max_length: 5e2\ngrpo:\n  lr: 5E-7\ndata:\n  solution_key: 1e3\n")
    config = load_config(PARAMS, override)
    assert config["sft"]["lr"] == 0.001 and config["grpo"]["lr"] == 5e-7
    assert config["sft"]["max_length"] == 500 and isinstance(config["sft"]["max_length"], int)
    assert config["data"]["solution_key"] == "1e3"  # a string where the schema wants one stays a string
    override.write_text("sft:\n  lr: 1e-3\ngrpo:\n  lr: 5E-7\n")
    work = tmp_path / "work"
    work.mkdir()
    planned = snakemake(work, "-n", "-p", "--", "results/sft/qwen/sft/metrics.json", configfiles=[override],
                        timeout=300)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert '"lr": 0.001' in planned.stdout


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    from giftlab.config import read_yaml

    bad = tmp_path / "site.yaml"
    bad.write_text("sft:\n  lr: [1e-3\n  epochs: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(PARAMS, bad)
    assert str(err.value) == f"{bad}, line 3, column 9: not valid YAML (expected ',' or ']', but got ':')"
    with pytest.raises(ConfigError, match=r"^config file not found: .*absent\.yaml$"):
        load_config(PARAMS, tmp_path / "absent.yaml")
    assert read_yaml(PARAMS)["profile"] == "tiny"


def test_job_setup_imports_torch_only_for_jobs_that_compute_with_it():
    """giftlab.cli.setup: GIFTLAB_THREADS for torch's threads; the report and judge scripts skip torch altogether."""
    import os
    import subprocess
    import sys

    code = ("import argparse, sys\n"
            "from giftlab import cli\n"
            "cli.setup(argparse.Namespace(config='{\"seed\": 0}'), torch_threads=False)\n"
            "assert 'torch' not in sys.modules\n"
            "cli.setup(argparse.Namespace(config='{\"seed\": 0}'))\n"
            "print(sys.modules['torch'].get_num_threads())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "GIFTLAB_THREADS": "3"})
    assert result.returncode == 0 and result.stdout.strip() == "3", result.stderr[-2000:]
    for name in ("table", "figure1", "figure2", "figure3", "claims", "rl_gain", "summary", "mtbench_judge"):
        assert "cli.setup(args, torch_threads=False)" in (REPO / "scripts" / f"{name}.py").read_text(), name


def test_job_freezes_the_collector_after_its_work_and_still_writes_its_output(tmp_path):
    """giftlab.cli.run: gc.freeze() once main returns (the exit skips collecting import-time objects); what main
    wrote is complete, and a main that fails still exits 1 with its one line."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out.txt"
    code = ("import gc, sys\n"
            "from giftlab import cli\n"
            "def main(argv):\n"
            "    assert gc.get_freeze_count() == 0\n"
            "    open(argv[0], 'w').write('done')\n"
            "    if argv[1] == 'fail':\n"
            "        raise cli.ConfigError('key x: bad')\n"
            "cli.run(main, sys.argv[1:])\n"
            "print(gc.get_freeze_count() > 0)\n")
    ok = subprocess.run([sys.executable, "-c", code, str(out), "ok"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == "True", ok.stderr[-2000:]
    assert out.read_text() == "done"
    rank = subprocess.run([sys.executable, "-c", code, str(out), "ok"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "WORLD_SIZE": "2"})
    assert rank.returncode == 0 and rank.stdout.strip() == "False", rank.stderr[-2000:]  # a rank exits as before
    failed = subprocess.run([sys.executable, "-c", code, str(out), "fail"], capture_output=True, text=True,
                            timeout=60)
    assert failed.returncode == 1 and failed.stderr.strip() == "error: key x: bad"


@pytest.mark.parametrize("site,key", [
    ({"backbones": {"qwen": {"path": "/nonexistent/models/Qwen2.5-7B"}}}, "backbones.qwen.path"),
    ({"data": {"path": "/nonexistent/data/DeepMath-103K"}}, "data.path"),
], ids=["backbone folder", "deepmath folder"])
def test_paper_plan_stops_on_a_missing_local_path_with_one_line(tmp_path, site, key):
    """A site file's local path that does not exist (a typo, a download not made) used to plan every job: the split
    or the SFT jobs failed on the cluster, after their wait for GPUs, with the path in their logs."""
    bad = write_override(tmp_path / "site.yaml", site)
    cache = paper_hub_cache(tmp_path / ".hf-cache")  # the other base models: downloaded (docs/scale.md, step 2)
    result = snakemake(tmp_path, "-n", configfiles=[REPO / "config" / "paper.yaml", bad], timeout=120,
                       env={"HF_HUB_CACHE": str(cache)})
    assert result.returncode != 0
    errors = [l for l in (result.stderr + result.stdout).splitlines() if l.startswith(f"config error: {key}:")]
    assert errors, (result.stderr + result.stdout)[-2000:]
    assert "Traceback" not in result.stderr


def test_resource_names_snakemake_or_the_plugin_read_are_not_typos():
    """The typo check refuses names close to a known one: names the plugin (cluster) or Snakemake (mem_mib,
    disk_mib) read must pass."""
    from giftlab.resources import check_resources

    check_resources({"resources": {"default": {"cluster": "gpu", "mem_mib": 1000, "disk_mib": 1000, "mem": "16G",
                                               "runtime": 30, "slurm_extra": "--signal=TERM@600"}}})


def test_the_launch_check_reads_the_codes_accelerate_config_and_names_a_yaml_error(tmp_path, monkeypatch):
    from giftlab.resources import launch_processes

    monkeypatch.chdir(tmp_path)  # a workspace apart from the code: no workflow/accelerate/ of its own
    # no --num_processes: the count is the config file's (num_processes: 8), read from the code's copy
    assert launch_processes("accelerate launch --config_file workflow/accelerate/fsdp.yaml scripts/sft.py") == 8
    bad = tmp_path / "acc.yaml"
    bad.write_text("num_processes: [8\n")
    with pytest.raises(ConfigError, match=r"acc.yaml, line 2, column 1: not valid YAML"):
        launch_processes(f"accelerate launch --config_file {bad} scripts/sft.py")


def test_a_launch_lines_config_file_of_the_code_is_found_from_a_workspace_apart(tmp_path):
    """config/paper.yaml's launch lines name workflow/accelerate/fsdp.yaml relative to the workspace: one apart from
    the code (snakemake -s <clone>/Snakefile --directory <it>) has no such file, and its SFT/GRPO jobs failed."""
    from giftlab.resources import resolve_launch

    line = load_config(PARAMS, REPO / "config" / "paper.yaml")["launch"]["sft"]
    assert resolve_launch(line, REPO, REPO) == line  # the clone is the workspace: the line as given
    resolved = resolve_launch(line, REPO, tmp_path)
    assert f"--config_file {REPO / 'workflow' / 'accelerate' / 'fsdp.yaml'}" in resolved
    assert resolved.replace(f"{REPO}/", "") == line
    (tmp_path / "workflow" / "accelerate").mkdir(parents=True)  # the workspace's own copy wins
    (tmp_path / "workflow" / "accelerate" / "fsdp.yaml").write_text("num_processes: 8\n")
    assert resolve_launch(line, REPO, tmp_path) == line
    assert resolve_launch("python", REPO, tmp_path) == "python"
    # the rest of the line, shell syntax included, as given
    shell = "accelerate launch --config_file=workflow/accelerate/fsdp.yaml --main_process_port $((29500 + RANDOM))"
    assert resolve_launch(shell, REPO, tmp_path / "elsewhere") == shell.replace(
        "=workflow/", f"={REPO}/workflow/")


def test_local_paths_checked_and_hub_ids_left_to_the_jobs(tmp_path, monkeypatch):
    from giftlab import models
    from giftlab.config import check_local_paths

    paper = load_config(PARAMS, REPO / "config" / "paper.yaml")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    check_local_paths(paper, ["qwen", "llama"], tmp_path)  # hub ids: owner/name, downloaded by the jobs
    # offline (HF_HUB_OFFLINE=1), a hub id must be in the cache, where an offline load looks: else one line now
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "hub_cache_dir", lambda: tmp_path / "hf-cache")
    with pytest.raises(ConfigError, match=r"^config error: backbones\.qwen\.path: Qwen/Qwen2.5-7B is no folder here "
                                          r"and not in the Hugging Face cache \(.*hf-cache\), and HF_HUB_OFFLINE"):
        check_local_paths(paper, ["qwen", "llama"], tmp_path)
    paper_hub_cache(tmp_path / "hf-cache")
    check_local_paths(paper, ["qwen", "llama"], tmp_path)
    # a hub-shaped path whose first part is a folder here (models/, data/ in every workspace) is a local path
    with pytest.raises(ConfigError, match=r"^config error: backbones\.qwen\.path: no such folder: shared/models/Qwen"):
        check_local_paths(deep_merge(paper, {"backbones": {"qwen": {"path": "shared/models/Qwen"}}}), ["qwen"],
                          tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(ConfigError, match=r"no such folder: models/Qwen2.5-7B \(models/ is a folder here"):
        check_local_paths(deep_merge(paper, {"backbones": {"qwen": {"path": "models/Qwen2.5-7B"}}}), ["qwen"],
                          tmp_path)
    # a folder without config.json (a download cut short, a level too high) is no checkpoint
    (tmp_path / "partial" / "Qwen2.5-7B").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"^config error: backbones\.qwen\.path: \./partial/Qwen2.5-7B holds no "
                                          r"config.json"):
        check_local_paths(deep_merge(paper, {"backbones": {"qwen": {"path": "./partial/Qwen2.5-7B"}}}), ["qwen"],
                          tmp_path)
    (tmp_path / "shared" / "models" / "qwen").mkdir(parents=True)
    (tmp_path / "shared" / "models" / "qwen" / "config.json").write_text("{}")
    local = deep_merge(paper, {"backbones": {"qwen": {"path": "shared/models/qwen"},
                                             "llama": {"path": "shared/models/llama"}}})
    check_local_paths(local, ["qwen"], tmp_path)   # relative to the workspace; llama's grid is not built
    with pytest.raises(ConfigError, match=r"^config error: backbones\.llama\.path: .*shared/models/llama"):
        check_local_paths(local, ["qwen", "llama"], tmp_path)
    with pytest.raises(ConfigError, match=r"^config error: data\.path: .*DeepMath\.parquet"):
        check_local_paths(deep_merge(paper, {"data": {"path": "DeepMath.parquet"}}), [], tmp_path)


def test_the_papers_other_local_inputs_are_checked_before_the_plan(tmp_path):
    """Figure 3's MATH500 copy and MT-Bench's questions and references, which no rule makes: in a workspace holding
    the tiny default's outputs, a missing one did not stop the paper plan (Snakemake keeps a consumer's output when
    a missing input stops its producer): 27 jobs were planned and the tiny tables kept as the paper's."""
    from giftlab.config import check_local_paths
    from giftlab.plan import Plan

    paper = load_config(PARAMS, REPO / "config" / "paper.yaml")
    files = Plan(paper).local_inputs()
    assert [(key, path) for key, path, _ in files] == [
        ("eval.main_benchmark", "data/benchmarks/math500.jsonl"), ("mtbench.questions", "data/mt_bench/question.jsonl"),
        ("mtbench.reference_answers", "data/mt_bench/reference_answer/gpt-4.jsonl")]
    for key, path, _ in files:
        with pytest.raises(ConfigError, match=rf"^config error: {re.escape(key)}: no such file: {re.escape(path)} "):
            check_local_paths(paper, [], tmp_path, files)
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("{}\n")
    check_local_paths(paper, [], tmp_path, files)
    assert Plan(load_config(PARAMS)).local_inputs() == []  # the tiny world makes its own
    no_dynamics = deep_merge(paper, {"grpo": {"eval_every": 0}, "mtbench": {"enabled": False}})
    assert Plan(no_dynamics).local_inputs() == []


def test_local_paths_of_extra_models_and_tiny_profile_benchmarks_are_checked_before_the_plan(tmp_path):
    """A models.extra folder that is missing or is no checkpoint (when its jobs are planned: a config may keep
    models.extra for later), a tiny profile's copy of a real benchmark that is not in eval.benchmark_dir: one line
    before any job (they failed inside the jobs, after training)."""
    from giftlab.config import check_local_paths
    from giftlab.plan import Plan

    config = load_config(PARAMS)
    run = tmp_path / "run"
    (run / "epoch_1").mkdir(parents=True)
    for path, message in ((f"{tmp_path}/nosuch", f"models.extra.mine.path: no such folder: {tmp_path}/nosuch"),
                          (str(run), f"models.extra.mine.path: {run} holds no config.json")):
        extra = deep_merge(config, {"models": {"extra": {"mine": {"path": path}}}})
        check_local_paths(extra, [], tmp_path)  # the other targets still plan
        with pytest.raises(ConfigError, match=re.escape(message)):
            Plan(extra).extra_model("mine")
    (run / "config.json").write_text("{}")
    assert Plan(deep_merge(config, {"models": {"extra": {"mine": {"path": str(run)}}}})).extra_model("mine")[0] == \
        [str(run)]
    hub = Plan(deep_merge(config, {"models": {"extra": {"mine": {"path": "Qwen/Qwen2.5-7B"}}}}))
    assert hub.extra_model("mine") == ([], "Qwen/Qwen2.5-7B")

    gsm8k = deep_merge(config, {"eval": {"benchmarks": [*config["eval"]["benchmarks"], "gsm8k"],
                                         "benchmark_dir": str(tmp_path / "copies")}})
    plan = Plan(gsm8k)
    with pytest.raises(ConfigError, match=r"eval.benchmarks: no such file: .*copies/gsm8k.jsonl \(gsm8k's local copy "
                                          r"in eval.benchmark_dir: a tiny profile reads no hub"):
        check_local_paths(gsm8k, [], tmp_path, plan.local_inputs())
    (tmp_path / "copies").mkdir()
    (tmp_path / "copies" / "gsm8k.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    assert Plan(gsm8k).benchmark_files("all")["gsm8k"] == str(tmp_path / "copies" / "gsm8k.jsonl")
    assert Plan(gsm8k).benchmark_files("all")["tiny_id"] == "data/tiny/benchmarks/tiny_id.jsonl"
    check_local_paths(gsm8k, [], tmp_path, Plan(gsm8k).local_inputs())
