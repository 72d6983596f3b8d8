# Helpers shared by the rules: config validation, the experiment grid, job configs, paths, targets.
import json
import os
import shlex
import sys

from snakemake.exceptions import WorkflowError

from giftlab.cli import ConfigError
from giftlab.config import (DEFAULT_PASS_KS, DIRECT_RL, DIRECT_SFT, EVAL_RULES, RUN_PATTERN, benchmarks,
                            eval_settings, extra_models, final_models, gift_vs_sft_runs, objective_of, rl_runs, rule_resources,
                            rule_threads, sft_runs, unique, validate_config)
from giftlab.rowfiles import find_data
from giftlab.tinyworld import BENCHMARK_NAMES as TINY_BENCHMARK_NAMES

try:
    validate_config(config, REPO / "workflow" / "schemas" / "params.schema.yaml")
except ConfigError as exc:
    # One line naming the key, before any job is scheduled.
    sys.exit(str(exc))

SCRIPTS = REPO / "scripts"
TINY = config["data"]["source"] == "tiny"
BACKBONES = list(config["backbones"])
# Backbones whose grid is built (every table and figure); all of them unless figures.backbones says otherwise.
ACTIVE_BACKBONES = config["figures"].get("backbones") or BACKBONES
TINY_BENCHMARKS = list(TINY_BENCHMARK_NAMES)
BENCH_DIR = "data/tiny/benchmarks" if TINY else config["eval"].get("benchmark_dir", "data/benchmarks")
STAGE_PAIRS = ["base_sft", "sft_rl"]


def script(name):
    return shlex.quote(str(SCRIPTS / f"{name}.py"))


def as_arg(payload):
    """A job's config section as one shell-quoted JSON argument (also Snakemake's params trigger)."""
    return shlex.quote(json.dumps(payload, sort_keys=True))


def launcher(rule_name):
    """The command that starts a GPU job's script (`python`, or e.g. `accelerate launch ...` from config `launch`)."""
    return config.get("launch", {}).get(rule_name, "python")


def job_resources(rule_name):
    """A rule's executor resources from config `resources` (default, then the rule's own keys)."""
    return rule_resources(config, rule_name)


def job_threads(rule_name, fallback=None):
    return rule_threads(config, rule_name, fallback)


# ------------------------------------------------------------------ models by stage


def base_model_dir(backbone):
    spec = config["backbones"][backbone]
    return f"models/base/{backbone}" if spec["source"] == "tiny" else spec["path"]


def base_model_input(wildcards):
    """The DAG dependency on a base model: the pretrain rule's output, or nothing for hub/local models."""
    spec = config["backbones"][wildcards.backbone]
    return [f"models/base/{wildcards.backbone}"] if spec["source"] == "tiny" else []


def base_model_param(wildcards):
    return base_model_dir(wildcards.backbone)


def sft_epoch_dir(backbone, run):
    return f"models/sft/{backbone}/{run}/epoch_{config['sft']['rl_epoch']}"


def model_for(stage, backbone, run):
    """(DAG inputs, model path) of the model of a (stage, backbone, run)."""
    if stage == "base":
        return base_model_input_of(backbone), base_model_dir(backbone)
    if stage == "sft":
        return [f"models/sft/{backbone}/{run}"], sft_epoch_dir(backbone, run)
    return [f"models/rl/{backbone}/{run}"], f"models/rl/{backbone}/{run}"


def base_model_input_of(backbone):
    return [f"models/base/{backbone}"] if config["backbones"][backbone]["source"] == "tiny" else []


def eval_model_input(wildcards):
    return model_for(wildcards.stage, wildcards.backbone, wildcards.run)[0]


def eval_model_path(wildcards):
    return model_for(wildcards.stage, wildcards.backbone, wildcards.run)[1]


def local_benchmark_files(group):
    """{benchmark: local file or folder} of a group: the tiny world's files, or the copies present in
    eval.benchmark_dir in any format giftlab.rowfiles reads (a benchmark without one loads from the hub)."""
    if TINY:
        return {name: f"{BENCH_DIR}/{name}.jsonl" for name in benchmarks(config, group)}
    found = {name: find_data(BENCH_DIR, name) for name in benchmarks(config, group)}
    return {name: str(path) for name, path in found.items() if path is not None}


def eval_benchmark_files(group):
    return list(local_benchmark_files(group).values())


def eval_benchmark_args(group):
    return " ".join(f"--benchmark-file {name}={path}" for name, path in local_benchmark_files(group).items())


def eval_outputs(group, suffix):
    return expand("results/eval/{{stage}}/{{backbone}}/{{run}}/{benchmark}.{suffix}",
                  benchmark=benchmarks(config, group), suffix=suffix)


def sft_train_input(wildcards):
    """Direct SFT trains on the SFT and RL subsets together (paper E.1); every other run on SFT only."""
    return ["data/splits/sft.jsonl", "data/splits/rl.jsonl"] if wildcards.run == DIRECT_SFT else ["data/splits/sft.jsonl"]


def grpo_init_input(wildcards):
    if wildcards.run == DIRECT_RL:
        return base_model_input(wildcards)
    return [f"models/sft/{wildcards.backbone}/{wildcards.run}"]


def grpo_init_param(wildcards):
    if wildcards.run == DIRECT_RL:
        return base_model_dir(wildcards.backbone)
    return sft_epoch_dir(wildcards.backbone, wildcards.run)


def pair_models(wildcards):
    earlier, later = wildcards.pair.split("_")
    return model_for(earlier, wildcards.backbone, wildcards.run), model_for(later, wildcards.backbone, wildcards.run)


def consistency_inputs(wildcards):
    (a_in, _), (b_in, _) = pair_models(wildcards)
    return unique(a_in + b_in)


def consistency_model_a(wildcards):
    return pair_models(wildcards)[0][1]


def consistency_model_b(wildcards):
    return pair_models(wildcards)[1][1]


# ------------------------------------------------------------------ job configs


def world_job(wildcards):
    return as_arg({"seed": config["seed"], **config.get("world", {})})


def pretrain_job(wildcards):
    spec = {k: v for k, v in config["backbones"][wildcards.backbone].items() if k != "source"}
    return as_arg({"seed": config["seed"], "backbone": wildcards.backbone, **spec, "pretrain": config["pretrain"]})


def split_job(wildcards):
    job = {"seed": config["seed"], "split": config["data"]["split"], "solution_key": config["data"]["solution_key"]}
    if config["data"].get("instruction"):  # only when set: unchanged params for existing runs
        job["instruction"] = True
    return as_arg(job)


def sft_job(wildcards):
    method, beta = objective_of(wildcards.run)
    sft = config["sft"]
    settings = {k: sft[k] for k in ("epochs", "batch_size", "lr", "max_length", "grad_accum", "lr_scheduler",
                                    "warmup_ratio", "weight_decay", "adam_betas", "max_grad_norm",
                                    "loss_head", "loss_backend", "bf16", "export_dtype", "report_to") if k in sft}
    return as_arg({
        "seed": config["seed"], "backbone": wildcards.backbone, "run": wildcards.run,
        "method": method, "beta": beta, "solution_key": config["data"]["solution_key"],
        "objective_params": sft.get("objective_params", {}).get(method, {}),
        "settings": settings,
    })


def dynamics_benchmark_file():
    """RL dynamics read the main benchmark from a local file (tiny: generated; paper: eval.benchmark_dir, copied
    there beforehand: a missing copy stops the plan with its name rather than leave Figure 3 empty)."""
    main = config["eval"]["main_benchmark"]
    return str(find_data(BENCH_DIR, main) or f"{BENCH_DIR}/{main}.jsonl") if not TINY else f"{BENCH_DIR}/{main}.jsonl"


def tracks_dynamics(run):
    """RL dynamics (Figure 3) are measured for the SFT and GIFT runs only (grpo.eval_every > 0)."""
    return bool(config["grpo"].get("eval_every")) and run in gift_vs_sft_runs(config, [run])


def grpo_job(wildcards):
    # Only what shapes this job: not the grid selection (runs, direct_rl), and no dynamics settings
    # for runs that do not track them, so changing those reruns nothing else.
    grpo = {k: v for k, v in config["grpo"].items() if k not in ("runs", "direct_rl")}
    if not tracks_dynamics(wildcards.run):
        grpo = {k: v for k, v in grpo.items() if not k.startswith("eval_")}
    return as_arg({"seed": config["seed"], "backbone": wildcards.backbone, "run": wildcards.run,
                   "sft_epoch": None if wildcards.run == DIRECT_RL else config["sft"]["rl_epoch"],
                   "grpo": grpo})


def grpo_dynamics_input(wildcards):
    return [dynamics_benchmark_file()] if tracks_dynamics(wildcards.run) else []


def eval_job(spec):
    """The job config of an evaluation rule: each benchmark's sampling settings (eval_settings; before RL with
    eval.pre_rl merged in, for Table 3's pass@k)."""
    def job(wildcards):
        settings = {name: eval_settings(config["eval"], name, pre_rl=spec["pre_rl"])
                    for name in benchmarks(config, spec["group"])}
        return as_arg({"seed": config["seed"], "stage": wildcards.stage, "backbone": wildcards.backbone,
                       "run": wildcards.run, "benchmarks": settings})
    return job


# ------------------------------------------------------------------ checkpoints the pipeline did not train (extra.smk)

EXTRA = extra_models(config)


def extra_model_path(wildcards):
    return EXTRA[wildcards.name]["path"]


def extra_model_input(wildcards):
    """A local checkpoint folder is an input (its changes rerun the evaluation); a hub id is fetched by the job."""
    path = extra_model_path(wildcards)
    return [path] if os.path.isdir(path) else []


def extra_eval_job(wildcards):
    settings = {name: eval_settings(config["eval"], name) for name in benchmarks(config, "all")}
    return as_arg({"seed": config["seed"], "stage": "extra", "run": wildcards.name,
                   "backbone": EXTRA[wildcards.name].get("backbone"), "benchmarks": settings})


def extra_targets(wildcards):
    """The table of every models.extra checkpoint, with its evaluations (and consistency where it names a backbone)."""
    if not EXTRA:
        raise WorkflowError("extra_models: config models.extra names no checkpoint (docs/scale.md, 'Evaluate any "
                            "checkpoint')")
    return [f"results/extra/extra_models.{ext}" for ext in ("csv", "md", "tex", "provenance.json")]


def extra_results():
    evals = expand("results/extra/eval/{name}/{benchmark}.summary.json", name=list(EXTRA),
                   benchmark=benchmarks(config, "all"))
    return evals + [f"results/extra/consistency/{name}.json" for name, spec in EXTRA.items() if spec.get("backbone")]


def consistency_job(wildcards):
    return consistency_payload(wildcards.backbone, wildcards.run, wildcards.pair)


def extra_consistency_job(wildcards):
    return consistency_payload(EXTRA[wildcards.name]["backbone"], wildcards.name, "base_extra")


def extra_base_input(wildcards):
    return base_model_input_of(EXTRA[wildcards.name]["backbone"]) + extra_model_input(wildcards)


def extra_base_dir(wildcards):
    return base_model_dir(EXTRA[wildcards.name]["backbone"])


def consistency_payload(backbone, run, pair):
    return as_arg({"seed": config["seed"], "backbone": backbone, "run": run,
                   "stage_pair": pair, "solution_key": config["data"]["solution_key"],
                   "max_examples": config["eval"].get("consistency_examples", 200),
                   "max_length": config["sft"]["max_length"],
                   **({"dtype": config["eval"]["consistency_dtype"]} if config["eval"].get("consistency_dtype") else {})})


def figure_job(wildcards):
    return as_arg({"seed": config["seed"], "backbones": ACTIVE_BACKBONES, "benchmark": config["eval"]["main_benchmark"]})


def fig1_job(wildcards):
    backbones = config["figures"]["fig1"].get("backbones") or ACTIVE_BACKBONES
    return as_arg({"seed": config["seed"], "backbones": backbones, "benchmarks": benchmarks(config, "math")})


def rl_gain_pairs():
    """(backbone, run, benchmark) of SFT and GIFT runs on the reasoning benchmarks: before vs after GRPO."""
    return [(bb, run, bench) for bb in ACTIVE_BACKBONES for run in gift_vs_sft_runs(config, rl_runs(config))
            for bench in benchmarks(config, "reasoning")]


def rl_gain_job(wildcards):
    return as_arg({"seed": config["seed"], "pairs": rl_gain_pairs()})


def table_job(wildcards):
    n = int(wildcards.n)
    job = {"seed": config["seed"], "table": n, "backbones": ACTIVE_BACKBONES, "benchmarks": table_benchmarks(n)}
    if n == 3:
        job["ks"] = list(config["eval"].get("pre_rl", {}).get("ks", DEFAULT_PASS_KS))
    if n in (1, 2) and config["eval"].get("report_metric"):
        job["report_metric"] = config["eval"]["report_metric"]
    return as_arg(job)


# ------------------------------------------------------------------ result files


def eval_summary(stage, backbone, run, benchmark=None):
    benchmark = benchmark or config["eval"]["main_benchmark"]
    return f"results/eval/{stage}/{backbone}/{run}/{benchmark}.summary.json"


def eval_samples(stage, backbone, run, benchmark):
    return eval_summary(stage, backbone, run, benchmark).replace(".summary.json", ".samples.jsonl")


def final_evals(group="all", backbones=None):
    """Evaluations of every final policy (Tables 1-2): RL runs, Direct RL, Direct SFT."""
    return [eval_summary(stage, bb, run, bench) for bb in backbones or ACTIVE_BACKBONES
            for stage, run in final_models(config) for bench in benchmarks(config, group)]


def pre_rl_evals(backbones=None):
    """SFT checkpoints (the epoch RL starts from) of SFT and GIFT runs on the math benchmarks (Table 3)."""
    return [eval_summary("sft", bb, run, bench) for bb in backbones or ACTIVE_BACKBONES
            for run in gift_vs_sft_runs(config, rl_runs(config)) for bench in benchmarks(config, "math")]


def consistency_results(backbones=None):
    return [f"results/consistency/{bb}/{run}/{pair}.json" for bb in backbones or ACTIVE_BACKBONES
            for run in gift_vs_sft_runs(config, rl_runs(config)) for pair in STAGE_PAIRS]


def sft_metrics(runs, backbones=None):
    return [f"results/sft/{bb}/{run}/metrics.json" for bb in backbones or ACTIVE_BACKBONES for run in runs]


def rl_metrics(runs, backbones=None):
    return [f"results/rl/{bb}/{run}/metrics.json" for bb in backbones or ACTIVE_BACKBONES for run in runs]


def table_benchmarks(n):
    return {1: benchmarks(config, "reasoning"), 2: benchmarks(config, "ood"), 3: benchmarks(config, "math")}.get(n, [])


def table_inputs(wildcards):
    n = int(wildcards.n)
    if n == 1:
        return final_evals("reasoning")
    if n == 2:
        return final_evals("ood")
    if n == 3:
        return pre_rl_evals()
    return consistency_results()


def fig1_inputs():
    runs = gift_vs_sft_runs(config, rl_runs(config))
    backbones = config["figures"]["fig1"].get("backbones") or ACTIVE_BACKBONES
    return {"sft_metrics": sft_metrics(runs, backbones),
            "rl_evals": [eval_summary("rl", bb, r, bench) for bb in backbones for r in runs
                         for bench in benchmarks(config, "math")]}


REPORTING_CODE = sorted(str(p) for p in (REPO / "src" / "giftlab" / "reporting").rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts)


def plotting_code(script_name):
    """Plot/table rules depend on their script and all of giftlab.reporting (the modules import each other, and
    the paper's numbers live there), so any change there redraws every table and figure (seconds)."""
    return [str(SCRIPTS / f"{script_name}.py"), *REPORTING_CODE]


# every table and figure comes with <stem>.provenance.json: config, seed, code version, packages, input hashes
TABLES = [f"results/tables/table{n}.{ext}" for n in (1, 2, 3, 4) for ext in ("csv", "md", "tex", "provenance.json")]
FIGURES = [f"figures/fig{n}.{ext}" for n in (1, 2, 3) for ext in ("pdf", "png", "provenance.json")]
SUMMARY = {"metrics": "results/summary/metrics.json", "val_loss": "results/summary/sft_val_loss.json",
           "pass1": "results/summary/rl_pass1.json"}


RL_GAIN = [f"results/tables/rl_gain.{ext}" for ext in ("csv", "md", "tex", "provenance.json")]


def all_targets():
    """Every table and figure, the claim-by-claim summary, and the small files DVC reads as metrics/plots."""
    return [*FIGURES, *TABLES, *RL_GAIN, "results/tables/claims.md", "results/tables/claims.provenance.json",
            *SUMMARY.values()]


def problems_input(wildcards):
    return ["data/tiny/problems.jsonl"] if TINY else []


def problems_path():
    return "data/tiny/problems.jsonl" if TINY else config["data"]["path"]


# ------------------------------------------------------------------ phases (DVC stages; phases.smk)


def with_samples(summaries):
    return [p for s in summaries for p in (s, s.replace(".summary.json", ".samples.jsonl"))]


def tiny_backbones():
    return [bb for bb in ACTIVE_BACKBONES if config["backbones"][bb]["source"] == "tiny"]


PHASE_OUTPUTS = {
    "world": lambda: (["data/tiny/problems.jsonl", "data/tiny/pretrain.jsonl", "data/tiny/tokenizer",
                       *expand("data/tiny/benchmarks/{name}.jsonl", name=TINY_BENCHMARKS), "results/world.json"]
                      if TINY else []),
    "base": lambda: [p for bb in tiny_backbones() for p in (f"models/base/{bb}", f"results/pretrain/{bb}.json")],
    "split": lambda: [f"data/splits/{name}.jsonl" for name in ("sft", "rl", "val")] + ["results/split.json"],
    "sft": lambda: [p for bb in ACTIVE_BACKBONES for run in sft_runs(config)
                    for p in (f"models/sft/{bb}/{run}", f"results/sft/{bb}/{run}/metrics.json",
                              f"results/sft/{bb}/{run}/tensorboard", f"results/steps/sft/{bb}/{run}.csv")],
    "grpo": lambda: [p for bb in ACTIVE_BACKBONES for run in rl_runs(config)
                     for p in (f"models/rl/{bb}/{run}", f"results/rl/{bb}/{run}/metrics.json",
                               f"results/rl/{bb}/{run}/tensorboard", f"results/steps/rl/{bb}/{run}.csv")],
    "eval": lambda: with_samples(unique(final_evals() + pre_rl_evals())),
    "analysis": lambda: consistency_results(),
    "figures": lambda: unique(all_targets()),
}

# The rules of each phase: what a phase's DVC stage lets Snakemake run (--allowed-rules). Every rule
# of the workflow belongs to exactly one phase (checked by the tests).
PHASE_RULES = {
    "world": ["world"],
    "base": ["pretrain_base"],
    "split": ["split"],
    "sft": ["sft"],
    "grpo": ["grpo"],
    "eval": list(EVAL_RULES),
    "analysis": ["consistency"],
    "figures": ["figure1", "figure2", "figure3", "table", "rl_gain", "claims", "summary"],
}


def phase_all_outputs():
    """Everything the phases own: the complete grid."""
    return [p for outputs in PHASE_OUTPUTS.values() for p in outputs()]
