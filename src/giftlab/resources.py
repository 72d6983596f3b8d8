"""What a rule's jobs ask the executor for and how they start: ``resources.<rule>`` (SLURM or local), CPU threads,
the ``launch.<rule>`` lines (``accelerate launch`` / torchrun) and their process counts, and the shell prefix every
rule's command runs after. Read by the rules (``common.smk``) and checked with the config (:mod:`giftlab.config`).
"""

from __future__ import annotations

import difflib
import re
import shlex
from pathlib import Path
from typing import Any, Mapping

from giftlab.cli import ConfigError, read_yaml

#: What every rule's shell command runs after (the Snakefile's ``shell.prefix``): Snakemake's own strict mode for bash,
#: then a TERM trap. SLURM signals every process of a job step, the rule's bash too (``--signal=TERM@...`` before the
#: time limit, preemption). Bash without a trap dies at once; the Snakemake process of the step then fails the job
#: and exits, the step and the job end, and the trainer, still writing its checkpoint, is orphaned: killed with the
#: job's cgroup on a cluster with proctrack/cgroup, outliving its job where nothing tracks it. With a trap, bash waits
#: for its command first (the trainer's save, then exit 75), and the job ends when the save has. The trap runs ':'
#: and does not reach the command's processes (a trap, unlike an ignored signal, is reset in them).
JOB_SHELL_PREFIX = "set -euo pipefail; trap : TERM; "

PROCESS_FLAGS = ("--num_processes", "--num-processes", "--nproc_per_node", "--nproc-per-node")
#: the rules whose jobs start through ``launch.<rule>`` (workflow/rules/sft.smk, grpo.smk)
LAUNCHED_RULES = ("sft", "grpo")
_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_CONFIG_FILE_FLAG = re.compile(r"(--config[_-]file)(=|\s+)([^\s'\"]+)")


def launch_processes(line: str, where: str = "launch") -> int | None:
    """How many processes a ``launch`` line starts: its ``--num_processes`` (accelerate) or ``--nproc_per_node``
    (torchrun), else ``num_processes`` of the ``accelerate launch --config_file`` it names (read relative to the
    workspace); None when the line does not say."""
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise ConfigError(f"config error: {where}: {line!r}: {exc}") from None
    config_file = None
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        value = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        if flag in PROCESS_FLAGS:
            return int(value) if value.isdigit() else None
        if flag in ("--config_file", "--config-file"):
            config_file = Path(value)
    code = Path(__file__).resolve().parents[2] / config_file if config_file is not None else None
    if config_file is not None and not config_file.is_file() and not config_file.is_absolute() and code.is_file():
        config_file = code  # a workspace apart from the code runs the code's file (resolve_launch)
    if config_file is not None and config_file.is_file():
        processes = (read_yaml(config_file) or {}).get("num_processes")
        return processes if isinstance(processes, int) else None
    command = next((arg for arg in argv if not _ENV_ASSIGNMENT.match(arg)), "")
    if re.fullmatch(r"python[0-9.]*", Path(command).name) and "-m" not in argv:
        return 1  # the script itself, one process (as without a launch line)
    return None


def resolve_launch(line: str, repo: Path, workspace: Path) -> str:
    """A ``launch`` line as a job runs it in ``workspace``: a relative ``--config_file`` that is the code's
    (config/paper.yaml's ``workflow/accelerate/fsdp.yaml``) and not the workspace's becomes the code's path, for a
    workspace apart from the code (``snakemake -s <clone>/Snakefile --directory <it>``); the rest of the line, shell
    syntax included, as given."""
    def code_path(found: re.Match) -> str:
        value = found.group(3)
        if Path(value).is_absolute() or (Path(workspace) / value).exists() or not (Path(repo) / value).is_file():
            return found.group(0)
        return f"{found.group(1)}{found.group(2)}{shlex.quote(str(Path(repo).resolve() / value))}"

    return _CONFIG_FILE_FLAG.sub(code_path, line)


def rule_processes(config: Mapping[str, Any], rule: str) -> int | None:
    """How many processes a rule's jobs run: one without a ``launch.<rule>`` line (plain ``python``), else the
    line's count, or its GPUs (``resources.<rule>.gpu``) where the line does not say; None when neither does."""
    line = (config.get("launch") or {}).get(rule)
    if not line:
        return 1
    processes = launch_processes(line, f"launch.{rule}")
    if processes is None:
        gpus = rule_resources(config, rule).get("gpu")
        processes = int(gpus) if str(gpus).isdigit() and int(gpus) > 0 else None
    return processes


def check_launch(config: Mapping[str, Any]) -> None:
    """One process per GPU: a ``launch.<rule>`` line that starts another number of processes than the rule's jobs
    ask SLURM for (``resources.<rule>.gpu``) would put two processes on one GPU, or leave GPUs idle. No line (or a
    plain ``python``) is one process: a training job on several GPUs would use one of them."""
    lines = config.get("launch") or {}
    for rule in dict.fromkeys([*LAUNCHED_RULES, *lines]):
        gpus = rule_resources(config, rule).get("gpu")
        processes = launch_processes(lines[rule], f"launch.{rule}") if lines.get(rule) else 1
        if str(gpus).isdigit() and int(gpus) > 0 and processes is not None and int(gpus) != processes:
            starts = f"starts {processes} processes" if processes > 1 else "starts one process (python)"
            where = f"launch.{rule}" if lines.get(rule) else f"launch.{rule} (not set)"
            raise ConfigError(f"config error: {where}: {starts}, but resources.{rule}.gpu is {gpus}: one process "
                              "per GPU (set both, as config/paper.yaml; for SFT's global batch, sft.grad_accum too)")


# resources that are counts: Snakemake's --set-resources refuses a non-positive one, the config must too (sbatch
# took `-t -5` as a time limit of 5,000 years)
COUNT_RESOURCES = ("runtime", "mem_mb", "mem_mb_per_cpu", "gpu", "cpus_per_task", "nodes", "tasks", "threads")
#: the resource names Snakemake (standard resources) and its SLURM executor plugin (2.x) read, and ``threads``.
#: Any other key is passed on as a custom resource and ignored by both, so one close to a known name (``runtme``)
#: is a typo that would silently drop a time limit.
KNOWN_RESOURCES = COUNT_RESOURCES + (
    "mem", "disk", "disk_mb", "tmpdir", "gpu_model", "gres", "constraint", "qos", "slurm_partition", "slurm_account",
    "slurm_extra", "slurm_cluster", "cluster", "clusters", "cpus_per_gpu", "tasks_per_gpu", "tasks_per_node", "mpi",
    "mem_mib", "disk_mib")


#: sbatch's names for what the plugin calls otherwise: given as resources, both would pass them on unread
SBATCH_NAMES = {"partition": "slurm_partition", "account": "slurm_account", "time": "runtime", "mem": None,
                "cpus": "cpus_per_task", "ntasks": "tasks", "gpus": "gpu", "gres": None}


def check_resources(config: Mapping[str, Any]) -> None:
    spec = config.get("resources") or {}
    for rule, section in spec.items():
        for key, value in (section or {}).items():
            near = difflib.get_close_matches(key, KNOWN_RESOURCES, n=1, cutoff=0.8)
            if key not in KNOWN_RESOURCES and (SBATCH_NAMES.get(key) or near):
                raise ConfigError(f"config error: resources.{rule}.{key}: not a resource Snakemake or its SLURM "
                                  f"plugin reads (did you mean {SBATCH_NAMES.get(key) or near[0]!r}?)")
            # a number must be a positive count (a string, e.g. runtime "48h", is Snakemake's to parse)
            if key in COUNT_RESOURCES and not isinstance(value, str) and (
                    isinstance(value, bool) or value < 0 or (value == 0 and key != "gpu")):
                raise ConfigError(f"config error: resources.{rule}.{key}: {value!r} is not a positive number")
            if key == "slurm_extra" and re.search(r"--(gres|gpus)\b", str(value)):
                raise ConfigError(f"config error: resources.{rule}.slurm_extra: the SLURM plugin refuses --gres / "
                                  "--gpus there; ask with `gpu` (and `gpu_model` for a GPU type)")
    for rule in spec:
        _check_signal_lead(rule, rule_resources(config, rule) if rule != "default" else dict(spec["default"] or {}))


def _check_signal_lead(rule: str, resources: Mapping[str, Any]) -> None:
    """A time limit no longer than ``--signal=TERM@<lead>`` (config/paper.yaml asks for 20 min on sft and grpo)
    sends the signal as the job starts: the trainer is told to save before it has begun (a site file giving a short
    runtime to a test run), and every retry again."""
    lead = re.search(r"--signal[= ](?:[A-Z]+:)?[A-Z0-9]+@(\d+)", str(resources.get("slurm_extra", "")))
    minutes = _minutes(resources.get("runtime"))
    if lead and minutes is not None and minutes * 60 <= int(lead.group(1)) + 60:
        raise ConfigError(f"config error: resources.{rule}.runtime: {resources['runtime']!r} leaves no time before "
                          f"slurm_extra's {lead.group(0)} (SLURM signals the job {lead.group(1)} s before its time "
                          f"limit): a runtime above {int(lead.group(1)) // 60 + 1} min, or a shorter --signal lead")


def _minutes(runtime: Any) -> float | None:
    """A runtime in minutes: a number (the plugin's unit), or a string such as "90s", "30m", "2h", "1d"; None when
    unknown (Snakemake parses the rest)."""
    if isinstance(runtime, (int, float)) and not isinstance(runtime, bool):
        return float(runtime)
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(runtime or ""))
    if not found:
        return None
    return float(found.group(1)) * {"s": 1 / 60, "m": 1, "": 1, "h": 60, "d": 1440}[found.group(2)]


def rule_resources(config: Mapping[str, Any], rule: str) -> dict[str, Any]:
    """What a rule's jobs ask the executor for: ``resources.default``, then ``resources.<rule>`` key by key.

    Keys are the SLURM executor plugin's names (``gpu``, ``mem_mb``, ``runtime``, ``cpus_per_task``,
    ``slurm_partition``, ``slurm_account``, ``slurm_extra``, ...); the local executor ignores the ``slurm_*`` ones.
    They live in the config, not in the Snakemake profile, because a profile key given again on the command line
    (``--set-resources``, ``--default-resources``) replaces the profile's whole mapping, whereas a config file
    given later (``--configfile config/paper.yaml site.yaml``) overrides it key by key, and ``--set-resources
    sft:slurm_partition=h200`` then changes only that key of the rule's resources. ``threads`` is not a resource:
    see :func:`rule_threads`.
    """
    spec = config.get("resources") or {}
    merged = {**(spec.get("default") or {}), **(spec.get(rule) or {})}
    merged.pop("threads", None)
    return merged


def rule_threads(config: Mapping[str, Any], rule: str, fallback: int | None = None) -> int:
    """CPU threads of a rule's jobs (GIFTLAB_THREADS): ``resources.<rule>.threads``, else ``resources.default``'s,
    else ``fallback``, else the top-level ``threads`` (the training and evaluation rules)."""
    spec = config.get("resources") or {}
    for section in (spec.get(rule) or {}, spec.get("default") or {}):
        if "threads" in section:
            return int(section["threads"])
    return int(fallback if fallback is not None else config.get("threads", 1))
