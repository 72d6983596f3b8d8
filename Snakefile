# GIFT reproduction pipeline. Thin entry point: load + validate the config, include the rules.
#   snakemake                          every target of the tiny default (the README's main command)
#   snakemake figures/fig1.pdf         only what Figure 1 needs
#   snakemake --configfile config/smoke.yaml    CI-sized run
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

# This checkout's library, whatever giftlab the environment installed (another clone's editable install, a git
# worktree beside it): Snakemake plans with, and its jobs (which inherit PYTHONPATH, SLURM's too) run, this
# Snakefile's code, which the results' provenance then names.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [sys.path[0], os.environ.get("PYTHONPATH")])))

from giftlab.cli import ConfigError
from giftlab.config import read_yaml
from giftlab.grid import STAGE_PAIRS
from giftlab.resources import JOB_SHELL_PREFIX

min_version("9.0")

# bash waits for a rule's command when SLURM's SIGTERM reaches both: the trainers' checkpoint on SIGTERM happens
# inside the job, not after it (giftlab.resources.JOB_SHELL_PREFIX). Not part of any rule's shell text: no rerun.
shell.prefix(JOB_SHELL_PREFIX)

REPO = Path(workflow.basedir)


# Snakemake's own reader names neither the file nor the line of a YAML error: check params.yaml first (one line).
try:
    read_yaml(REPO / "params.yaml")
except ConfigError as exc:
    sys.exit(str(exc))


configfile: str(REPO / "params.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    backbone="[a-z][a-z0-9_]*",
    run=RUN_PATTERN,
    stage="base|sft|rl",
    benchmark="[a-z0-9_]+",
    pair="|".join(STAGE_PAIRS),
    n="|".join(str(n) for n in PLAN.tables()),  # Table 5 only where the config plans it (mtbench)
    name="[a-z][a-z0-9_]*",


include: "workflow/rules/world.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sft.smk"
include: "workflow/rules/grpo.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/mtbench.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/phases.smk"
include: "workflow/rules/extra.smk"


rule all:
    default_target: True
    input:
        PLAN.all_targets(),
