# Shared by the rules: config validation, the plan (giftlab.plan: runs, models, paths, targets, job configs) and
# small adapters from Snakemake's wildcards to it.
import json
import os
import shlex
import sys

from snakemake.exceptions import WorkflowError

from giftlab.cli import ConfigError
from giftlab.config import EVAL_RULES, RUN_PATTERN, check_local_paths, validate_config
from giftlab.dvc_deps import check_stage_deps
from giftlab.lock import WorkspaceBusy, hold_workspace_lock
from giftlab.io import workspace_path, write_json_atomic
from giftlab.resources import resolve_launch, rule_resources, rule_threads
from giftlab.plan import MTBENCH_TINY_QUESTIONS, RUNTIME_RULES, SUMMARY, Plan
from giftlab.stale import damaged_checkpoints, foreign_outputs, foreign_summary, forced_run, verify_command

try:  # one line naming the key, before any job is scheduled
    validate_config(config, REPO / "workflow" / "schemas" / "params.schema.yaml")
    PLAN = Plan(config)
    if workflow.is_main_process:  # a missing local base, DeepMath or benchmark copy: not a failed job per run
        check_local_paths(config, PLAN.backbones, Path.cwd(), PLAN.local_inputs())
        check_stage_deps(PLAN.phase_inputs(), Path.cwd())  # under `dvc repro`: the stage lists what it reads
except ConfigError as exc:
    sys.exit(str(exc))

if workflow.is_main_process and not forced_run(sys.argv[1:]):
    # Outputs made by another config, or damaged since they were written, that Snakemake would keep (restored by
    # DVC, copied, recorded under the wrong params.yaml, cut short) stop the plan in one line, before any job
    # (giftlab.stale). A forced run (--force, --forcerun, --forceall) is rebuilding on purpose.
    FOREIGN = foreign_outputs(PLAN.recorded_configs(), Path.cwd())
    FOREIGN += damaged_checkpoints(PLAN.checkpoint_outputs(), Path.cwd())
    if FOREIGN:
        sys.exit(foreign_summary(FOREIGN, verify_command(REPO, Path.cwd(), workflow.overwrite_configfiles)))


onstart:
    # One run per workspace (giftlab.lock): an OS lock, gone with this process however it ends (under SLURM, its jobs
    # not: none of a killed run's may be left); main process, jobs about to run (not -n, --lint, "Nothing to be done").
    try:
        hold_workspace_lock(Path.cwd(), shlex.join(sys.argv), slurm=workflow.executor_plugin.name == "slurm")
    except WorkspaceBusy as exc:
        sys.exit(str(exc))
    # this run's runtime settings, read by its jobs (a rerun trigger they are not: see runtime() below); --touch
    # runs no job
    if not workflow.touch:
        for rule_name in RUNTIME_RULES:
            write_json_atomic(RUNTIME_DIR / f"{rule_name}.json", PLAN.runtime(rule_name))


# relative where the code is in the workspace: a workspace moved whole keeps its jobs' params (giftlab.io)
SCRIPTS = workspace_path(REPO / "scripts")
RUNTIME_DIR = Path("work") / "runtime"
REPORTING_CODE = Plan.reporting_code(workspace_path(REPO / "src" / "giftlab"))


def script(name):
    return shlex.quote(str(SCRIPTS / f"{name}.py"))


def as_arg(payload):
    """A job's config section as one shell-quoted JSON argument (also Snakemake's params trigger)."""
    return shlex.quote(json.dumps(payload, sort_keys=True))


def job(rule_name):
    """params.job of a rule: its job config from the plan, for the job's wildcards."""
    return lambda wildcards: as_arg(PLAN.job(rule_name, dict(wildcards.items())))


def runtime(rule_name):
    """params.runtime: the file of the rule's runtime settings (giftlab.runtime_keys.RUNTIME_KEYS: settings that
    change no result), written at the start of each run. The param is the path, not the settings, so changing them
    reruns no finished job; the jobs that run use them."""
    return str(RUNTIME_DIR / f"{rule_name}.json")


def launcher(rule_name):
    """The command that starts a GPU job's script (`python`, or e.g. `accelerate launch ...` from config `launch`)."""
    return resolve_launch(config.get("launch", {}).get(rule_name, "python"), REPO, Path.cwd())


def job_resources(rule_name):
    """A rule's executor resources from config `resources` (default, then the rule's own keys)."""
    return rule_resources(config, rule_name)


def job_threads(rule_name, fallback=None):
    return rule_threads(config, rule_name, fallback)


def plotting_code(script_name):
    """Plot/table rules depend on their script and REPORTING_CODE (the modules import each other, and the paper's
    numbers live there), so any change there redraws every table and figure (seconds)."""
    return [str(SCRIPTS / f"{script_name}.py"), *REPORTING_CODE]


# ------------------------------------------------------------------ wildcards -> the plan's models


def base_input(wildcards):
    return PLAN.base_inputs(wildcards.backbone)


def base_dir(wildcards):
    return PLAN.base_dir(wildcards.backbone)


def stage_model(wildcards):
    return PLAN.model(wildcards.stage, wildcards.backbone, wildcards.run)


def grpo_init(wildcards):
    return PLAN.grpo_init(wildcards.backbone, wildcards.run)


def pair_inputs(wildcards):
    return PLAN.pair_inputs(wildcards.backbone, wildcards.run, wildcards.pair)


def pair_path(index):
    """The path of the earlier (0) or later (1) model of a consistency pair."""
    return lambda wildcards: PLAN.pair_models(wildcards.backbone, wildcards.run, wildcards.pair)[index][1]


def extra_model(wildcards):
    return PLAN.extra_model(wildcards.name)


def extra_base(wildcards):
    return PLAN.base_dir(PLAN.extra[wildcards.name]["backbone"])


def extra_base_input(wildcards):
    return PLAN.base_inputs(PLAN.extra[wildcards.name]["backbone"]) + extra_model(wildcards)[0]


def eval_outputs(group, suffix):
    return expand("results/eval/{{stage}}/{{backbone}}/{{run}}/{benchmark}.{suffix}",
                  benchmark=PLAN.benchmarks(group), suffix=suffix)


def extra_targets(wildcards):
    """The table of every models.extra checkpoint, with its evaluations (and consistency where it names a backbone)."""
    if not PLAN.extra:
        raise WorkflowError("extra_models: config models.extra names no checkpoint (docs/scale.md, 'Evaluate any "
                            "checkpoint')")
    return expand("results/extra/extra_models.{ext}", ext=["csv", "md", "tex", "provenance.json"])
