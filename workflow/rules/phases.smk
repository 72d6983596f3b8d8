# Phase targets: one target rule per paper phase, the unit DVC works at (dvc.yaml has one stage per
# phase, whose cmd is `snakemake --allowed-rules <phase rules> phase_<name>`). They produce nothing:
# each only asks for every output of its phase's rules over the experiment grid of the config.
#   snakemake phase_sft          every SFT run (all methods, every GIFT β, every backbone)
#   snakemake phase_eval         every post-RL evaluation of the grid (all eval.benchmarks)
# tests/test_dvc_pipeline.py checks that these targets and dvc.yaml's stages agree (rules, commands,
# outputs), and that together they cover exactly the DAG of `rule all`.


def phase_world_outputs():
    if not TINY:
        return []  # paper profile: problems come from data.path, benchmarks from eval.benchmark files
    return ["data/tiny/problems.jsonl", "data/tiny/pretrain.jsonl", "data/tiny/tokenizer",
            *expand("data/tiny/benchmarks/{name}.jsonl", name=TINY_BENCHMARKS)]


def tiny_backbones():
    return [bb for bb in BACKBONES if config["backbones"][bb]["source"] == "tiny"]


def phase_base_outputs():
    return [p for bb in tiny_backbones() for p in (f"models/base/{bb}", f"results/pretrain/{bb}.json")]


def phase_split_outputs():
    return [f"data/splits/{name}.jsonl" for name in ("sft", "rl", "val")] + ["results/split.json"]


def phase_sft_outputs():
    return [p for bb in BACKBONES for run in sft_runs(config)
            for p in (f"models/sft/{bb}/{run}", f"results/sft/{bb}/{run}/metrics.json")]


def phase_grpo_outputs():
    return [p for bb in BACKBONES for run in rl_runs(config)
            for p in (f"models/rl/{bb}/{run}", f"results/rl/{bb}/{run}/metrics.json")]


def phase_eval_outputs():
    """The post-RL evaluation grid: every RL run of every backbone on every benchmark of eval.benchmarks
    (Tables 1-2 and Figure 1 read from it). Summary and samples are both kept."""
    return [p for bb in BACKBONES for run in rl_runs(config) for bench in config["eval"]["benchmarks"]
            for p in (eval_summary("rl", bb, run, bench),
                      eval_summary("rl", bb, run, bench).replace(".summary.json", ".samples.jsonl"))]


def phase_figures_outputs():
    return unique(all_targets())


# ------------------------------------------------------------------ DVC metrics and plots

SUMMARY = {"metrics": "results/summary/metrics.json", "val_loss": "results/summary/sft_val_loss.json",
           "pass1": "results/summary/rl_pass1.json"}


rule summary:
    # Small, flat files for `dvc metrics show/diff` and `dvc plots show/diff` (dvc.yaml): pass@1 of
    # every post-RL policy on the main benchmark, and SFT validation loss per epoch. Reads only the
    # small metric files (like a figure) and is part of the figures phase.
    input:
        sft=[f"results/sft/{bb}/{run}/metrics.json" for bb in BACKBONES for run in rl_runs(config)],
        rl=[eval_summary("rl", bb, run) for bb in BACKBONES for run in rl_runs(config)],
    output:
        **SUMMARY,
    params:
        benchmark=config["eval"]["main_benchmark"],
        rl_epoch=config["sft"]["rl_epoch"],
    log:
        "logs/figures/summary.log",
    run:
        from giftlab.config import beta_of
        from giftlab.io import read_json, write_json_atomic

        metrics, val_loss, pass1 = {}, [], []
        for sft_path, rl_path in zip(input.sft, input.rl):
            sft, rl = read_json(sft_path), read_json(rl_path)
            bb, run = sft["backbone"], sft["run"]
            epochs = {e["epoch"]: e["val_loss"] for e in sft["epochs"]}
            beta = beta_of(run)
            metrics.setdefault(bb, {})[run] = {"pass@1": rl["pass@1"],
                                               "sft_val_loss": epochs.get(params.rl_epoch)}
            val_loss += [{"backbone": bb, "run": run, "epoch": e, "val_loss": v} for e, v in sorted(epochs.items())]
            pass1.append({"backbone": bb, "run": run, "beta": None if beta == float("inf") else beta,
                          "pass@1": rl["pass@1"]})
        write_json_atomic(output.metrics, {"benchmark": params.benchmark, **metrics})
        write_json_atomic(output.val_loss, val_loss)
        write_json_atomic(output.pass1, pass1)
        with open(log[0], "w") as fh:
            fh.write(f"summarised {len(pass1)} runs\n")


# The rules of each phase: what a phase's DVC stage lets Snakemake run (--allowed-rules). Every rule
# of the workflow belongs to exactly one phase (checked by the tests).
PHASE_RULES = {
    "world": ["world"],
    "base": ["pretrain_base"],
    "split": ["split"],
    "sft": ["sft"],
    "grpo": ["grpo"],
    "eval": ["evaluate"],
    "figures": ["figure1", "summary"],
}


rule phase_world:
    input:
        phase_world_outputs(),


rule phase_base:
    input:
        phase_base_outputs(),


rule phase_split:
    input:
        phase_split_outputs(),


rule phase_sft:
    input:
        phase_sft_outputs(),


rule phase_grpo:
    input:
        phase_grpo_outputs(),


rule phase_eval:
    input:
        phase_eval_outputs(),


rule phase_figures:
    input:
        phase_figures_outputs(),


PHASE_OUTPUTS = {
    "world": phase_world_outputs, "base": phase_base_outputs, "split": phase_split_outputs,
    "sft": phase_sft_outputs, "grpo": phase_grpo_outputs, "eval": phase_eval_outputs,
    "figures": phase_figures_outputs,
}


def phase_all_outputs():
    """Everything the phases own: the complete grid (what `rule all` asks for once it includes it)."""
    return [p for outputs in PHASE_OUTPUTS.values() for p in outputs()]


rule phase_all:
    input:
        phase_all_outputs(),
