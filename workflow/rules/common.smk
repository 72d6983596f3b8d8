# Helpers shared by the rules: config validation, the experiment grid, job configs, paths.
import json
import os
import shlex
import sys

from giftlab.cli import ConfigError
from giftlab.config import parse_run, rl_runs, run_name, sft_runs, unique, validate_config

try:
    validate_config(config, REPO / "workflow" / "schemas" / "params.schema.yaml")
except ConfigError as exc:
    # One line naming the key, before any job is scheduled.
    sys.exit(str(exc))

SCRIPTS = REPO / "scripts"
TINY = config["data"]["source"] == "tiny"
BACKBONES = list(config["backbones"])
BENCH_DIR = "data/tiny/benchmarks"
TINY_BENCHMARKS = ["tiny_id", "tiny_ood"]


wildcard_constraints:
    backbone="[a-z][a-z0-9_]*",
    run=r"[a-z][a-z0-9_]*(-b([0-9]+(\.[0-9]+)?|inf))?",
    stage="base|sft|rl",
    benchmark="[a-z0-9_]+",


def script(name):
    return shlex.quote(str(SCRIPTS / f"{name}.py"))


def as_arg(payload):
    """A job's config section as one shell-quoted JSON argument (also Snakemake's params trigger)."""
    return shlex.quote(json.dumps(payload, sort_keys=True))


# ------------------------------------------------------------------ models by stage


def base_model_dir(backbone):
    spec = config["backbones"][backbone]
    return f"models/base/{backbone}" if spec["source"] == "tiny" else spec["path"]


def base_model_input(wildcards):
    """The DAG dependency on a base model: the pretrain rule's output, or nothing for hub/local models."""
    spec = config["backbones"][wildcards.backbone]
    return [f"models/base/{wildcards.backbone}"] if spec["source"] == "tiny" else []


def sft_epoch_dir(backbone, run):
    return f"models/sft/{backbone}/{run}/epoch_{config['sft']['rl_epoch']}"


def base_model_param(wildcards):
    return base_model_dir(wildcards.backbone)


def rl_init_param(wildcards):
    return sft_epoch_dir(wildcards.backbone, wildcards.run)


def model_for_eval(wildcards):
    """(DAG input, model path) of the model a (stage, backbone, run) evaluation reads."""
    if wildcards.stage == "base":
        return base_model_input(wildcards), base_model_dir(wildcards.backbone)
    if wildcards.stage == "sft":
        return [f"models/sft/{wildcards.backbone}/{wildcards.run}"], sft_epoch_dir(wildcards.backbone, wildcards.run)
    return [f"models/rl/{wildcards.backbone}/{wildcards.run}"], f"models/rl/{wildcards.backbone}/{wildcards.run}"


def eval_model_input(wildcards):
    return model_for_eval(wildcards)[0]


def eval_model_path(wildcards):
    return model_for_eval(wildcards)[1]


def benchmark_file(wildcards):
    return f"{BENCH_DIR}/{wildcards.benchmark}.jsonl"


# ------------------------------------------------------------------ job configs


def sft_job(wildcards):
    method, beta = parse_run(wildcards.run)
    sft = config["sft"]
    settings = {k: sft[k] for k in ("epochs", "batch_size", "lr", "max_length", "grad_accum", "lr_scheduler",
                                    "warmup_ratio", "weight_decay", "adam_betas", "max_grad_norm",
                                    "loss_head", "bf16") if k in sft}
    return as_arg({
        "seed": config["seed"], "backbone": wildcards.backbone, "run": wildcards.run,
        "method": method, "beta": beta, "solution_key": config["data"]["solution_key"],
        "objective_params": sft.get("objective_params", {}).get(method, {}),
        "settings": settings,
    })


def grpo_job(wildcards):
    return as_arg({"seed": config["seed"], "backbone": wildcards.backbone, "run": wildcards.run,
                   "sft_epoch": config["sft"]["rl_epoch"], "grpo": config["grpo"]})


def eval_job(wildcards):
    return as_arg({"seed": config["seed"], "stage": wildcards.stage, "backbone": wildcards.backbone,
                   "run": wildcards.run, "benchmark": wildcards.benchmark, **config["eval"]})


# ------------------------------------------------------------------ targets


def eval_summary(stage, backbone, run, benchmark=None):
    benchmark = benchmark or config["eval"]["main_benchmark"]
    return f"results/eval/{stage}/{backbone}/{run}/{benchmark}.summary.json"


def fig1_inputs():
    fig = config["figures"]["fig1"]
    backbones = fig.get("backbones") or BACKBONES
    runs = [r for r in rl_runs(config) if parse_run(r)[0] in ("sft", "gift")]
    return {
        "sft_metrics": [f"results/sft/{bb}/{r}/metrics.json" for bb in backbones for r in runs],
        "rl_evals": [eval_summary("rl", bb, r) for bb in backbones for r in runs],
    }


def plotting_code(script_name):
    """Plot rules depend on their plotting code, so a changed colour redraws the figure (cheap)."""
    return [str(SCRIPTS / f"{script_name}.py"), str(REPO / "src" / "giftlab" / "reporting" / "figures.py")]


def all_targets():
    """Every table and figure (plus the small summary files DVC reads as metrics and plots)."""
    return ["figures/fig1.pdf", "figures/fig1.png", *SUMMARY.values()]

# ------------------------------------------------------------------ world, split, figures


def world_job(wildcards):
    return as_arg({"seed": config["seed"], **config.get("world", {})})


def pretrain_job(wildcards):
    spec = {k: v for k, v in config["backbones"][wildcards.backbone].items() if k != "source"}
    return as_arg({"seed": config["seed"], "backbone": wildcards.backbone, **spec, "pretrain": config["pretrain"]})


def problems_input(wildcards):
    return ["data/tiny/problems.jsonl"] if TINY else []


def problems_path():
    return "data/tiny/problems.jsonl" if TINY else config["data"]["path"]


def split_job(wildcards):
    return as_arg({"seed": config["seed"], "split": config["data"]["split"],
                   "solution_key": config["data"]["solution_key"]})


def fig1_job(wildcards):
    fig = config["figures"]["fig1"]
    return as_arg({"backbones": fig.get("backbones") or BACKBONES, "benchmark": config["eval"]["main_benchmark"]})
