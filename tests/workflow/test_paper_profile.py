"""config/paper.yaml against the GIFT paper (§4, Appendix E), and its scale-out files.

The resolved config is params.yaml + config/paper.yaml, exactly what
`snakemake --configfile config/paper.yaml` reads. Each row of PAPER names where the value comes from.
"""

from __future__ import annotations

import math

import pytest
import yaml

from giftlab.config import deep_merge, load_config
from giftlab.plan import Plan
from helpers import REPO

PAPER_YAML = REPO / "config" / "paper.yaml"
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
FSDP = REPO / "workflow" / "accelerate" / "fsdp.yaml"

# (key path in the resolved config, paper value, source)
PAPER = [
    ("profile", "paper", "-"),
    ("data.source", "deepmath", "§4: DeepMath-103K"),
    ("data.split.sft", 10_000, "§4: 10,000 samples for SFT"),
    ("data.split.rl", 10_000, "§4: 10,000 samples for RL"),
    ("data.split.val", 1_000, "§4: 1,000 samples for validation"),
    ("backbones.qwen.source", "pretrained", "§4"),
    ("backbones.llama.source", "pretrained", "§4"),
    # SFT, Appendix E.1
    ("sft.adam_betas", [0.9, 0.95], "E.1: AdamW β1 = 0.9, β2 = 0.95"),
    ("sft.weight_decay", 0.01, "E.1: weight decay 0.01"),
    ("sft.lr", 1e-5, "E.1: constant learning rate 1e-5"),
    ("sft.lr_scheduler", "constant", "E.1: constant learning rate"),
    ("sft.warmup_ratio", 0.0, "E.1: no warmup steps"),
    ("sft.max_length", 8192, "E.1: maximum sequence length 8,192"),
    ("sft.drop_last", True, "E.1: global batch 128 at every step (no short last step of an epoch)"),
    ("sft.rl_epoch", 6, "E.1: the 6th-epoch checkpoint initialises RL"),
    ("sft.objective_params.sft_entropy.lambda", 0.01, "E.1: λ = 0.01 (entropy)"),
    ("sft.objective_params.sft_ls.lambda", 0.01, "E.1: λ = 0.01 (label smoothing)"),
    ("sft.objective_params.sft_kd.alpha", 0.1, "E.1: α = 0.1 (distillation)"),
    ("sft.bf16", True, "E: bf16 (released config)"),
    # GRPO, Appendix E.2 and §4
    ("grpo.num_generations", 8, "E.2: G = 8"),
    ("grpo.temperature", 1.0, "E.2: T = 1.0"),
    ("grpo.lr", 1e-6, "E.2: constant learning rate 1e-6"),
    ("grpo.lr_scheduler", "constant", "E.2: constant learning rate"),
    ("grpo.warmup_steps", 0, "E.2: constant learning rate"),
    ("grpo.prompts_per_generation", 128, "E.2: global batch size 128"),
    ("grpo.prompts_per_update", 64, "E.2: mini-batch size 64"),
    ("grpo.clip_epsilon", 0.2, "E.2: clip ratio 0.2"),
    ("grpo.scale_rewards", "none", "E.2: norm_adv_by_std=False"),
    ("grpo.kl_coef", 0.0, "E.2: no KL term"),
    ("grpo.max_completion_length", 8192, "§4: maximum length 8,192"),
    ("grpo.grading_timeout", 10, "E.3: 10-second timeout"),
    ("grpo.use_vllm", True, "§4/E.3: vLLM"),
    # Evaluation, Appendix E.3 and §4
    ("eval.temperature", 0.6, "E.3: T = 0.6"),
    ("eval.max_new_tokens", 8192, "E.3: max token limit 8,192"),
    ("eval.n_samples", 4, "E.3: pass@1 averaged across four runs"),
    ("eval.backend", "vllm", "E.3: vLLM inference"),
    ("eval.grading_timeout", 10, "E.3: 10-second timeout"),
]


def lookup(config, dotted):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.fixture(scope="module")
def paper():
    return load_config(REPO / "params.yaml", PAPER_YAML)


@pytest.fixture(scope="module")
def slurm():
    return yaml.safe_load(SLURM_PROFILE.read_text())


@pytest.fixture(scope="module")
def fsdp():
    return yaml.safe_load(FSDP.read_text())


@pytest.mark.parametrize("key,value,source", PAPER, ids=[row[0] for row in PAPER])
def test_resolved_config_matches_the_paper(paper, key, value, source):
    got = lookup(paper, key)
    if isinstance(value, float):
        assert math.isclose(float(got), value), f"{key}: {got} != {value} ({source})"
    else:
        assert got == value, f"{key}: {got!r} != {value!r} ({source})"


def test_backbones_are_the_papers_models(paper):
    paths = {name: spec["path"] for name, spec in paper["backbones"].items()}
    assert set(paths) == {"qwen", "llama"}
    assert paths["qwen"].rstrip("/").endswith("Qwen2.5-7B")
    assert paths["llama"].rstrip("/").endswith("Llama-3.1-8B")
    assert paper["data"]["path"].rstrip("/").endswith("DeepMath-103K")


def test_methods_and_benchmarks_cover_tables_1_and_2(paper):
    assert set(paper["sft"]["methods"]) == {"sft", "sft_entropy", "sft_ls", "sft_kd", "dft", "asft", "psft", "gift"}
    assert len(paper["sft"]["gift_betas"]) >= 3 and 10 in paper["sft"]["gift_betas"]  # Figure 1's sweep (β ≈ 10)
    table1 = {"gsm8k", "aime24", "aime25", "math500", "humaneval_plus", "mbpp_plus"}
    table2 = {"gpqa", "mmlu_redux", "arc_challenge", "mmlu_pro"}
    assert set(paper["eval"]["benchmarks"]) == table1 | table2
    assert set(paper["eval"]["ood"]) == table2
    # every initialisation goes on to RL, except Direct SFT; Direct RL and the unified paradigms start from the base
    plan = Plan(paper)
    assert plan.rl_runs() == [r for r in plan.sft_runs() if r != "direct_sft"] + ["direct_rl", "luffy", "relift"]


def test_unified_paradigms_run_with_their_released_settings(paper):
    """Tables 1-2's Unified Paradigms rows: LUFFY and ReLIFT, each with its released hyperparameters (the registry's
    defaults), from the base model on the grpo section's budget."""
    from giftlab.rl_methods import get_method

    assert paper["unified"]["methods"] == ["luffy", "relift"]
    plan = Plan(paper)
    for name in ("luffy", "relift"):
        job = plan.job("grpo", {"backbone": "qwen", "run": name})
        released = dict(get_method(name).defaults, **({"sft_micro_batch": 1} if name == "relift" else {}))
        assert job["method_params"] == released, name  # not params.yaml's tiny sft_batch; ReLIFT's logits fit
        assert job["sft_epoch"] is None and plan.grpo_init("qwen", name)[1] == paper["backbones"]["qwen"]["path"]


def test_sft_global_batch_is_128_over_the_fsdp_launch(paper, fsdp, slurm):
    # E.1: global batch 128 = per-GPU batch x gradient accumulation x processes.
    processes = fsdp["num_processes"]
    assert paper["sft"]["batch_size"] * paper["sft"]["grad_accum"] * processes == 128
    assert fsdp["distributed_type"] == "FSDP" and fsdp["mixed_precision"] == "bf16"
    # The SLURM job gets exactly as many GPUs as accelerate starts processes.
    assert paper["resources"]["sft"]["gpu"] == processes
    assert f"--num_processes {processes}" in paper["launch"]["sft"]


def test_sft_settings_reach_the_trainer_as_in_the_paper(paper, tmp_path):
    from giftlab.training.sft import SFTSettings, training_arguments

    keys = ("epochs", "batch_size", "lr", "max_length", "grad_accum", "lr_scheduler", "warmup_ratio",
            "weight_decay", "adam_betas", "max_grad_norm", "loss_head", "bf16", "drop_last")
    settings = SFTSettings(seed=paper["seed"], **{k: paper["sft"][k] for k in keys})
    args = training_arguments(settings, tmp_path, steps_per_epoch=78)
    assert (args.adam_beta1, args.adam_beta2) == (0.9, 0.95)
    assert args.weight_decay == 0.01 and args.learning_rate == 1e-5
    assert getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type) == "constant"
    assert args.warmup_steps == 0
    assert args.num_train_epochs >= paper["sft"]["rl_epoch"] == 6
    # every optimiser step a whole 128 (10,000 = 78 x 128 + 16: no 79th step of 16)
    from giftlab.training.sft import optimiser_steps_per_epoch

    assert settings.drop_last
    assert optimiser_steps_per_epoch(paper["data"]["split"]["sft"], settings.batch_size, settings.grad_accum, 8,
                                     settings.drop_last) == 78
    # and the setting reaches the SFT job
    job = Plan(paper).job("sft", {"backbone": "qwen", "run": "sft"})
    assert job["settings"]["drop_last"] is True


def test_sft_truncates_on_the_right():
    # E.1: right-side truncation -- the prompt is kept, the end of the demonstration is cut.
    from giftlab.data import tokenize_sft_example
    from giftlab.tinyworld import build_tokenizer

    tok = build_tokenizer()
    full = tokenize_sft_example(tok, "Start with 3. Add 4.", "3 + 4 = 7. The answer is 7.", max_length=10_000)
    cut = tokenize_sft_example(tok, "Start with 3. Add 4.", "3 + 4 = 7. The answer is 7.",
                               max_length=len(full["input_ids"]) - 5)
    assert cut["input_ids"] == full["input_ids"][: len(cut["input_ids"])]
    assert cut["labels"] == full["labels"][: len(cut["labels"])]


def test_grpo_maps_to_the_papers_trl_arguments(paper, tmp_path):
    from giftlab.training.grpo import grpo_arguments

    world = 8
    kwargs = grpo_arguments(paper["grpo"], tmp_path, seed=paper["seed"], world_size=world)
    G = kwargs["num_generations"]
    assert G == 8 and kwargs["temperature"] == 1.0 and kwargs["learning_rate"] == 1e-6
    assert kwargs["lr_scheduler_type"] == "constant" and kwargs["warmup_steps"] == 0
    assert kwargs["epsilon"] == 0.2 and kwargs["beta"] == 0.0 and kwargs["scale_rewards"] == "none"
    assert kwargs["max_completion_length"] == 8192 and kwargs["use_vllm"] is True
    # One update = 64 prompts x G completions over all processes; a rollout (128 prompts) = 2 updates.
    per_update = kwargs["per_device_train_batch_size"] * world * kwargs["gradient_accumulation_steps"]
    assert per_update == 64 * G
    # micro-batches of 2 completions of up to 8,192 tokens: their bf16 logits (2 x 8.7k x 152k) stay near 5 GB
    assert kwargs["per_device_train_batch_size"] == 2 and kwargs["gradient_accumulation_steps"] == 32
    # colocated vLLM sized, not TRL's defaults (the model's 131k context, which Llama-8B's KV cache cannot hold)
    assert kwargs["vllm_max_model_length"] >= 8192 + 1024 and kwargs["vllm_enable_sleep_mode"] is True
    assert 0 < kwargs["vllm_gpu_memory_utilization"] <= 0.5 and kwargs["vllm_tensor_parallel_size"] == 1
    assert kwargs["vllm_mode"] == "colocate"  # stated: older TRL releases default to a separate server
    # E.2 has no importance-sampling term; TRL's default (on) would reweight every sequence's loss
    from trl import GRPOConfig

    assert GRPOConfig(**{**kwargs, "use_vllm": False, "bf16": False}).vllm_importance_sampling_correction is False
    assert kwargs["loss_type"] == "dapo"  # VeRL's token-mean aggregation (the paper trains with VeRL)
    assert kwargs["steps_per_generation"] // kwargs["gradient_accumulation_steps"] == 2
    # E.2: one epoch over the RL split (78 full rollouts of 128 prompts, drop_last) = 156 updates.
    rl = paper["data"]["split"]["rl"]
    assert kwargs["max_steps"] == (rl // 128) * 2


def test_grpo_weight_decay_is_verls_actor_default(paper, tmp_path):
    """E.2 names no RL weight decay; the paper trains with VeRL, whose actor AdamW decays by 0.01
    (actor_rollout_ref.actor.optim.weight_decay, the verl GIFT ships), and the value reaches TRL's arguments."""
    from giftlab.training.grpo import grpo_arguments

    assert paper["grpo"]["weight_decay"] == 0.01
    assert grpo_arguments(paper["grpo"], tmp_path, seed=paper["seed"], world_size=8)["weight_decay"] == 0.01
    assert Plan(paper).job("grpo", {"backbone": "qwen", "run": "gift-b20"})["grpo"]["weight_decay"] == 0.01


def test_grpo_dual_clip_is_verls_clip_ratio_c(paper, tmp_path):
    """VeRL's actor default clip_ratio_c 3.0 reaches TRL as delta; LUFFY and ReLIFT, released without any clip, drop it."""
    from giftlab.rl_methods import get_method
    from giftlab.training.grpo import grpo_arguments

    assert paper["grpo"]["dual_clip"] == 3.0
    assert grpo_arguments(paper["grpo"], tmp_path, seed=paper["seed"], world_size=8)["delta"] == 3.0
    assert Plan(paper).job("grpo", {"backbone": "qwen", "run": "gift-b20"})["grpo"]["dual_clip"] == 3.0
    for name in ("relift", "luffy"):  # released without any clip (LUFFY's loss is its mixin's own)
        method = get_method(name)
        assert method.grpo_overrides(method.check(paper["unified"].get(name), paper["grpo"]))["delta"] is None


def test_evaluation_reports_pass_at_1(paper):
    assert 1 in paper["eval"]["ks"] and max(paper["eval"]["ks"]) <= paper["eval"]["n_samples"]
    assert paper["eval"]["main_benchmark"] in paper["eval"]["benchmarks"]


def test_llama_aime_is_reported_as_pass_at_32(paper):
    """§4 / E.3: pass@32 for Llama-3.1-8B on AIME24/25, pass@1 everywhere else."""
    from giftlab.config import eval_settings

    assert paper["eval"]["report_metric"] == {"llama": {"aime24": "pass@32", "aime25": "pass@32"}}
    for bench in ("aime24", "aime25"):
        final = eval_settings(paper["eval"], bench)
        assert final["n_samples"] >= 32 and 32 in final["ks"]


def test_table3_pass_at_k_exists_on_every_math_benchmark(paper):
    """Table 3 (pass@1..8 before RL, math benchmarks): AIME's own n = 32 must not drop pass@2 and pass@4."""
    from giftlab.config import benchmarks, eval_settings

    assert benchmarks(paper, "math") == ["gsm8k", "math500", "aime24", "aime25"]
    for bench in benchmarks(paper, "math"):
        pre = eval_settings(paper["eval"], bench, pre_rl=True)
        assert {1, 2, 4, 8} <= set(pre["ks"]) and pre["n_samples"] >= 8, bench
    assert 32 in eval_settings(paper["eval"], "aime24", pre_rl=True)["ks"]


def test_deepmath_loads_from_a_downloaded_dataset_directory(tmp_path):
    """docs/scale.md step 2 downloads the hub repo (README.md + data/*.parquet); data.path may name that folder."""
    import pandas as pd

    from giftlab.data import load_problems

    (tmp_path / "README.md").write_text("# DeepMath-103K\n")
    (tmp_path / "data").mkdir()
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "stale.parquet").write_bytes(b"not parquet")
    cols = {"question": ["q1", "q2", "q3"], "final_answer": ["1", "2", "3"], "r1_solution_1": ["s1", "s2", "s3"]}
    frame = pd.DataFrame(cols)
    frame.iloc[:2].to_parquet(tmp_path / "data" / "train-00000-of-00002.parquet")
    frame.iloc[2:].to_parquet(tmp_path / "data" / "train-00001-of-00002.parquet")
    rows = load_problems(str(tmp_path), "r1_solution_1")
    assert [r["question"] for r in rows] == ["q1", "q2", "q3"]
    (tmp_path / "data" / "train-00001-of-00002.parquet").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="train-00001-of-00002.parquet: not a readable parquet file"):
        load_problems(str(tmp_path), "r1_solution_1")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="empty: no data files"):
        load_problems(str(empty), "r1_solution_1")


def test_deepmath_split_reads_every_format_and_reports_repeats(tmp_path, capsys):
    """data.path may be a parquet, jsonl, json or csv file too; repeated questions are counted in split.json, and
    the checks (columns, empty answers, sizes) fail in one line."""
    import csv
    import importlib.util
    import json

    import pandas as pd

    from giftlab.data import load_problems

    rows = [{"question": f"q{i % 5}", "final_answer": str(i % 5), "r1_solution_1": f"s{i}"} for i in range(7)]
    pd.DataFrame(rows).to_parquet(tmp_path / "deepmath.parquet")
    (tmp_path / "deepmath.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "deepmath.json").write_text(json.dumps(rows))
    with open(tmp_path / "deepmath.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for suffix in ("parquet", "jsonl", "json", "csv"):
        assert load_problems(str(tmp_path / f"deepmath.{suffix}"), "r1_solution_1") == rows, suffix
    spec = importlib.util.spec_from_file_location("split_script", REPO / "scripts" / "split.py")
    split = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(split)
    outs = [a for name in ("sft", "rl", "val") for a in (f"--{name}", str(tmp_path / f"{name}.jsonl"))]
    job = {"seed": 0, "split": {"sft": 3, "rl": 1, "val": 1}, "solution_key": "r1_solution_1"}
    split.main(["--config", json.dumps(job), "--problems", str(tmp_path / "deepmath.parquet"), *outs,
                "--summary", str(tmp_path / "split.json")])
    summary = json.loads((tmp_path / "split.json").read_text())
    assert summary["distinct_questions"] == 5 and summary["repeated_questions_dropped"] == 2
    assert "2 repeated questions dropped (5 distinct of 7 rows)" in capsys.readouterr().out
    with pytest.raises(Exception, match="asks for 6 problems but the source has 5 distinct questions"):
        split.main(["--config", json.dumps({**job, "split": {"sft": 4, "rl": 1, "val": 1}}), "--problems",
                    str(tmp_path / "deepmath.parquet"), *outs, "--summary", str(tmp_path / "split.json")])
    (tmp_path / "bad.jsonl").write_text(json.dumps({**rows[0], "final_answer": ""}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl: row 1: column 'final_answer' is missing or empty"):
        load_problems(str(tmp_path / "bad.jsonl"), "r1_solution_1")
    with pytest.raises(Exception, match="data.path: no such file or folder: .*nope.parquet"):
        load_problems(str(tmp_path / "nope.parquet"), "r1_solution_1")


def test_slurm_profile_requeues_and_every_gpu_rule_gets_gpus(paper, slurm):
    from giftlab.resources import rule_resources

    assert slurm["executor"] == "slurm"
    assert slurm["slurm-requeue"] is True and slurm["retries"] >= 1 and slurm["rerun-incomplete"] is True
    # job shapes live in the config, where a later file overrides key by key (not in the profile, where a
    # command-line --set-resources / --default-resources would replace the whole mapping)
    assert "set-resources" not in slurm and "default-resources" not in slurm
    for rule in ("sft", "grpo", "evaluate", "consistency"):  # consistency: two 7-8B models over 1k x 8k tokens
        resources = rule_resources(paper, rule)
        assert resources["gpu"] >= 1, rule
        assert resources["runtime"] > 0 and resources["mem_mb"] > 0, rule
    for rule in ("split", "figure1"):
        assert "gpu" not in rule_resources(paper, rule), rule
    for rule in ("sft", "grpo"):  # a single-node launch: the plugin's --gpus=8 alone lets SLURM split them
        assert rule_resources(paper, rule)["nodes"] == 1, rule
    assert paper["eval"]["consistency_dtype"] == "bfloat16"  # two 7-8B checkpoints on one GPU


def test_every_gpu_job_is_one_slurm_task(paper):
    """requirements-gpu.txt's SLURM plugin (2.6.1, submit_string.py) adds --ntasks-per-gpu=<tasks_per_gpu, else
    tasks, else 1> to a GPU job's sbatch: sft and grpo asked one node for 8 tasks x --cpus-per-task=64 = 512 CPUs,
    which sbatch refuses on any 8-GPU node. A job is one task (its launcher starts the processes; the jobstep's
    `srun -n1` runs it); 2.7.0+ adds the flag only where asked."""
    from giftlab.resources import rule_resources

    for rule in ("sft", "grpo", "evaluate", "consistency", "mtbench_answer", "reference_cache"):
        resources = rule_resources(paper, rule)
        per_gpu = resources.get("tasks_per_gpu", resources.get("tasks", 1))
        tasks = resources["gpu"] * per_gpu if per_gpu >= 1 else resources.get("tasks") or 1
        assert tasks == 1, f"{rule}: --ntasks-per-gpu={per_gpu} x --gpus={resources['gpu']} = {tasks} tasks of " \
                           f"{resources['cpus_per_task']} CPUs each"


def test_training_questions_are_prompted_like_the_math_benchmarks(paper, tmp_path):
    """data.instruction: the SFT/RL questions end with the instruction the math benchmarks are evaluated with."""
    import importlib.util
    import json

    from giftlab.evaluation.benchmarks import load_benchmark

    assert paper["data"]["instruction"] is True
    problem = "What is $1 + 1$?"
    rows = [{"question": problem if i == 0 else f"q{i}", "final_answer": "2", "r1_solution_1": "\\boxed{2}"}
            for i in range(6)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = importlib.util.spec_from_file_location("split_script", REPO / "scripts" / "split.py")
    split = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(split)
    job = {"seed": 0, "split": {"sft": 6, "rl": 0, "val": 0}, "solution_key": "r1_solution_1", "instruction": True}
    split.main(["--config", json.dumps(job), "--problems", str(tmp_path / "p.jsonl"),
                *[a for name in ("sft", "rl", "val") for a in (f"--{name}", str(tmp_path / f"{name}.jsonl"))],
                "--summary", str(tmp_path / "split.json")])
    trained = {json.loads(line)["question"] for line in (tmp_path / "sft.jsonl").read_text().splitlines()}
    (tmp_path / "math500.jsonl").write_text(json.dumps({"problem": problem, "answer": "2", "unique_id": "x"}) + "\n")
    evaluated = load_benchmark("math500", path=tmp_path / "math500.jsonl")[0]["prompt"]
    assert evaluated in trained


def test_paper_profile_restricted_to_a_benchmark_subset_validates(paper):
    """Merged configs cannot delete keys: AIME's per_benchmark / report_metric entries stay, and must not block
    a run on a subset; an unknown name there is still a typo."""
    from giftlab.cli import ConfigError
    from giftlab.config import deep_merge, validate_config

    subset = deep_merge(paper, {"eval": {"benchmarks": ["gsm8k", "math500"], "ood": [], "math": ["gsm8k", "math500"]}})
    validate_config(subset)
    with pytest.raises(ConfigError, match="eval.per_benchmark: unknown benchmark 'aime2024'"):
        validate_config(deep_merge(subset, {"eval": {"per_benchmark": {"aime2024": {"n_samples": 32}}}}))
    with pytest.raises(ConfigError, match="eval.report_metric.llama.aime2024: unknown benchmark"):
        validate_config(deep_merge(subset, {"eval": {"report_metric": {"llama": {"aime2024": "pass@32"}}}}))


@pytest.mark.parametrize("rule", ["sft", "grpo"])
def test_training_launch_gives_a_checkpoint_on_sigterm_minutes_not_30_s(paper, rule, monkeypatch):
    """torchrun SIGKILLs its workers 30 s after forwarding a SIGTERM unless told otherwise; a 93 GB checkpoint
    needs minutes. The paper's launch line, read as the rule's shell runs it (environment assignments first) and
    through accelerate's and torchrun's own argument handling, ends in torchrun's LaunchConfig with 900 s."""
    import shlex
    from unittest import mock

    import torch.distributed.run as distrib_run
    from accelerate.commands.launch import _filter_args, _validate_launch_command, launch_command_parser

    monkeypatch.chdir(REPO)  # the rule's shell runs in the workspace: --config_file is relative to it
    words = shlex.split(paper["launch"][rule])
    env = dict(w.split("=", 1) for w in words[:words.index("accelerate")])
    assert words[words.index("accelerate"):][:2] == ["accelerate", "launch"]
    args = launch_command_parser().parse_args(words[words.index("accelerate") + 2:] + [f"scripts/{rule}.py"])
    args = _validate_launch_command(args)[0]
    with mock.patch.dict("os.environ", env):
        torchrun_args = _filter_args(args, distrib_run.get_args_parser(),
                                     ["--training_script", args.training_script,
                                      "--training_script_args", args.training_script_args])
        config, _, _ = distrib_run.config_from_args(torchrun_args)
    assert config.shutdown_timeout == 900
    # and SLURM signals the job that long before its time limit (SIGTERM then SIGKILL after KillWait, often 30 s)
    from giftlab.resources import rule_resources

    extra = shlex.split(rule_resources(paper, rule).get("slurm_extra", ""))
    signal = [w.split("=", 1)[1] for w in extra if w.startswith("--signal=")]
    assert signal and signal[0].startswith("TERM@") and int(signal[0].split("@")[1]) > config.shutdown_timeout


def test_sft_runs_outside_figure_1_stop_at_the_epoch_rl_reads(paper):
    """E.1: RL starts from the 6th of 10 SFT epochs; Figure 1 plots all 10 for SFT and GIFT. The other 14 runs
    (6 objectives and Direct SFT, both backbones) stop after epoch 6 on the 10-epoch schedule (same checkpoint)."""
    plan = Plan(paper)
    stops = {(bb, run): plan.job("sft", {"backbone": bb, "run": run})["settings"].get("stop_epoch")
             for bb in plan.backbones for run in plan.sft_runs()}
    compared = {(bb, run) for bb in plan.backbones for run in plan.compared_runs()}  # Figure 1's and the summary's
    assert {key for key, stop in stops.items() if stop is None} == compared and len(compared) == 12
    assert {stop for key, stop in stops.items() if key not in compared} == {paper["sft"]["rl_epoch"]} == {6}
    assert len(stops) - len(compared) == 14
    # the summary's per-epoch curves cover the compared runs of every backbone, in Figure 1 or not
    qwen_panel = Plan(deep_merge(paper, {"figures": {"fig1": {"backbones": ["qwen"]}}}))
    assert "stop_epoch" not in qwen_panel.job("sft", {"backbone": "llama", "run": "gift-b10"})["settings"]
    every = Plan(deep_merge(paper, {"sft": {"all_epochs": True}}))
    assert all("stop_epoch" not in every.job("sft", {"backbone": bb, "run": r})["settings"] for bb, r in stops)


def test_a_typo_in_eval_benchmarks_is_named_as_itself(paper):
    """A misspelt benchmark is reported as unknown, not as another key's mismatch (eval.ood then names the right
    spelling as 'not in eval.benchmarks', which points at the wrong key)."""
    from giftlab.cli import ConfigError
    from giftlab.config import deep_merge, validate_config

    names = [("gpqa_diamnd" if b == "gpqa" else b) for b in paper["eval"]["benchmarks"]]
    assert "gpqa" in paper["eval"]["ood"] and "gpqa_diamnd" in names
    with pytest.raises(ConfigError, match="^config error: eval.benchmarks: unknown benchmark 'gpqa_diamnd'") as exc:
        validate_config(deep_merge(paper, {"eval": {"benchmarks": names}}))
    assert "needs a register_local line" in str(exc.value)  # a benchmark of one's own
