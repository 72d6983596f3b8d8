"""What a cluster user runs from docs/scale.md, run here: the plan command as the document writes it, per-job
SLURM resources after a site file and per-call overrides, and scripts/after_pull.sh's argument order."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO, paper_hub_cache, venv_env

pytestmark = pytest.mark.slow  # scheduled early on the two workers (tests/conftest.py)

DOC = REPO / "docs" / "scale.md"
PAPER_BENCHMARKS = ("gsm8k", "math500", "aime24", "aime25", "humaneval_plus", "mbpp_plus", "gpqa", "mmlu_pro",
                    "mmlu_redux", "arc_challenge")


def doc_site() -> dict:
    """docs/scale.md's `config/site.yaml` blocks (the paths, then the resources), merged as the docs say."""
    from giftlab.config import deep_merge

    site: dict = {}
    for block in re.findall(r"```yaml\n(# config/site\.yaml[^\n]*\n.*?)```", DOC.read_text(), flags=re.S):
        site = deep_merge(site, yaml.safe_load(block) or {})
    return site


SITE = {"resources": doc_site()["resources"]}


def doc_commands(prefix: str) -> list[str]:
    """The shell commands in docs/scale.md's bash blocks that start with ``prefix`` (continuations joined)."""
    text = DOC.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split(" # ")[0].strip()
            if command.startswith(prefix):
                commands.append(command)
    return commands


@pytest.fixture
def paper_workdir(tmp_path):
    """A working directory as the paper run has it: the benchmark copies and a site file (docs/scale.md §2-3)."""
    bench_dir = tmp_path / "data" / "benchmarks"
    bench_dir.mkdir(parents=True)
    for bench in PAPER_BENCHMARKS:
        (bench_dir / f"{bench}.jsonl").touch()
    (tmp_path / "data" / "mt_bench" / "reference_answer").mkdir(parents=True)   # Table 5's FastChat files
    (tmp_path / "data" / "mt_bench" / "question.jsonl").touch()
    (tmp_path / "data" / "mt_bench" / "reference_answer" / "gpt-4.jsonl").touch()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "site.yaml").write_text(yaml.safe_dump(SITE))
    (tmp_path / "config" / "paper.yaml").write_text((REPO / "config" / "paper.yaml").read_text())
    return tmp_path


def slurm_profile(tmp_path: Path) -> Path:
    """The SLURM profile; without the executor plugin installed, the same profile minus its executor settings."""
    profile = REPO / "workflow" / "profiles" / "slurm"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
        return profile
    except ImportError:
        settings = yaml.safe_load((profile / "config.yaml").read_text())
        settings = {k: v for k, v in settings.items() if k != "executor" and not k.startswith("slurm-")}
        local = tmp_path / "slurm-profile"
        local.mkdir(exist_ok=True)  # called once per documented command
        (local / "config.yaml").write_text(yaml.safe_dump(settings))
        return local


def run_doc_snakemake(command: str, workdir: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[0] == "snakemake"
    argv = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
            *[str(profile) if a == "workflow/profiles/slurm" else a for a in argv[1:]], *extra]
    cache = paper_hub_cache(workdir / ".hf-cache")  # the base models downloaded first (docs/scale.md, step 2)
    return subprocess.run(argv, cwd=workdir, env=venv_env(HF_HUB_CACHE=str(cache)), capture_output=True, text=True,
                          timeout=300)


def test_the_documented_paper_commands_plan_the_paper_grid(paper_workdir, tmp_path):
    """docs/scale.md §4 as written, each command as a dry run: it used to put the target after --configfile
    (FileNotFoundError 'phase_all')."""
    commands = [c for c in doc_commands("snakemake") if "config/paper.yaml" in c and "rehearsal" not in c
                and "extra_models" not in c]
    assert len(commands) >= 2, "docs/scale.md §4 lost its plan and run commands"
    for command in commands:
        extra = () if " -n " in command else ("-n", "--quiet", "rules")
        result = run_doc_snakemake(command, paper_workdir, slurm_profile(tmp_path), *extra)
        assert result.returncode == 0, f"{command}: " + (result.stdout + result.stderr)[-3000:]
        counts = dict(line.split() for line in result.stdout.splitlines()
                      if re.fullmatch(r"\w+\s+\d+", line.strip()))
        assert counts["sft"] == "26" and counts["consistency"] == "24", command
        assert counts["grpo"] == "30", command  # 13 from the SFT runs and Direct RL, LUFFY, ReLIFT per backbone
        assert (counts["evaluate"], counts["evaluate_direct_sft"], counts["evaluate_pre_rl"]) == ("30", "2", "12")
        assert counts["mtbench_answer"] == counts["mtbench_judge"] == "24", command  # Table 5


def test_the_documented_extra_models_command_plans_their_evaluations(paper_workdir, tmp_path):
    """docs/scale.md 'Evaluate any checkpoint': its config/extra.yaml and its command, as a dry run."""
    block = re.search(r"```yaml\n(# config/extra.yaml\n.*?)```", DOC.read_text(), flags=re.S)
    assert block, "docs/scale.md lost its config/extra.yaml example"
    extra = yaml.safe_load(block.group(1))
    released = Path(extra["models"]["extra"]["gift_qwen_released"]["path"])
    local = paper_workdir / "released"  # the example's folder, here
    local.mkdir()
    (local / "config.json").write_text("{}")  # a checkpoint folder (the plan refuses one without)
    extra["models"]["extra"]["gift_qwen_released"]["path"] = str(local)
    (paper_workdir / "config" / "extra.yaml").write_text(yaml.safe_dump(extra))
    [command] = [c for c in doc_commands("snakemake") if "extra_models" in c]
    result = run_doc_snakemake(command, paper_workdir, slurm_profile(tmp_path), "-n", "--quiet", "rules")
    assert result.returncode == 0, f"{command}: " + (result.stdout + result.stderr)[-3000:]
    counts = dict(line.split() for line in result.stdout.splitlines() if re.fullmatch(r"\w+\s+\d+", line.strip()))
    assert counts == {"evaluate_extra": "2", "consistency_extra": "1", "split": "1", "table_extra": "1",
                      "extra_models": "1", "total": "6"}, (released, counts)


def job_resources(dry_run: str) -> dict[str, dict[str, str]]:
    """rule name -> its first job's `resources:` line of a Snakemake dry run, as a dict."""
    out, rule = {}, None
    for line in dry_run.splitlines():
        match = re.match(r"^rule (\w+):", line) or re.match(r"^localrule (\w+):", line)
        if match:
            rule = match.group(1)
        elif rule and line.strip().startswith("resources:") and rule not in out:
            pairs = line.strip()[len("resources:"):].split(", ")
            out[rule] = dict(p.strip().split("=", 1) for p in pairs)
    return out


def test_site_file_and_per_call_overrides_add_to_the_jobs_resources(paper_workdir, tmp_path):
    """A per-call --set-resources / --default-resources used to replace the profile's whole mapping (sft lost its
    GPUs, memory and runtime; CPU rules their partition), and consistency had no resources at all."""
    targets = ["results/sft/qwen/sft/metrics.json", "results/consistency/qwen/sft/base_sft.json",
               "results/mtbench/scores/qwen/sft.json"]
    command = ("snakemake " + " ".join(targets) + " -n --workflow-profile workflow/profiles/slurm"
               " --set-resources sft:runtime=720 --default-resources slurm_extra=--comment=gift"
               " --configfile config/paper.yaml config/site.yaml")
    result = run_doc_snakemake(command, paper_workdir, slurm_profile(tmp_path))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    resources = job_resources(result.stdout)
    sft, consistency, split = resources["sft"], resources["consistency"], resources["split"]
    assert (sft["gpu"], sft["mem_mb"], sft["cpus_per_task"]) == ("8", "900000", "64")  # from config/paper.yaml
    # one node: the plugin asks for --gpus=8 (the job's total) and no node count, so SLURM could split the GPUs
    # over nodes, where a single-node `accelerate launch` cannot start
    assert sft["nodes"] == "1"
    assert sft["runtime"] == "720"                                                     # the per-call override
    assert (sft["slurm_partition"], sft["slurm_account"]) == ("h200", "abc123")      # the site file
    assert consistency["gpu"] == "1" and int(consistency["mem_mb"]) >= 64000
    assert consistency["slurm_partition"] == "h200"
    assert split["slurm_partition"] == "cpu" and "gpu" not in split and split["slurm_extra"] == "--comment=gift"
    # the judge, a local rule, counts against the profile's global judge_jobs limit: under the SLURM executor local
    # jobs have no core limit (--local-cores is ignored), and all 24 judge jobs would call the API at once
    assert resources["mtbench_judge"]["judge_jobs"] == "1"
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert "judge_jobs=2" in profile["resources"]


@pytest.fixture
def recording_tools(tmp_path):
    """`dvc` and `snakemake` stand-ins on PATH that record their arguments (after_pull.sh's own logic only)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dvc", "snakemake"):
        path = bin_dir / tool
        stages = 'if [ "$1" = stage ]; then echo sft; fi\n' if tool == "dvc" else ""  # `dvc stage list`
        path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/{tool}.args"\n{stages}')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return env, tmp_path


@pytest.mark.parametrize("args", [["phase_sft", "--configfile", "config/paper.yaml"],
                                  ["--configfile", "config/paper.yaml", "phase_sft"]])
def test_after_pull_hands_snakemake_its_targets_as_targets(recording_tools, args):
    env, tmp = recording_tools
    subprocess.run(["bash", str(REPO / "scripts" / "after_pull.sh"), *args], cwd=REPO, env=env, check=True,
                   capture_output=True, text=True)
    argv = (tmp / "snakemake.args").read_text().split("\n")[:-1]
    assert argv[argv.index("--") + 1:] == ["phase_sft"]
    assert argv[argv.index("--configfile") + 1] == "config/paper.yaml"
    assert {"--touch", "--forceall"} <= set(argv[:argv.index("--")])  # every job's metadata, params included


def test_grpo_under_the_fsdp_launch_leaves_activation_checkpointing_to_fsdp(monkeypatch, tmp_path):
    """TRL turns gradient checkpointing on by default, the FSDP config turns on FSDP's own, and transformers' Trainer
    refuses both at once. The environment is the one `accelerate launch` builds from workflow/accelerate/fsdp.yaml."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env
    from trl import GRPOConfig

    from giftlab.config import load_config
    from giftlab.training.grpo import grpo_arguments

    launch = launch_command_parser().parse_args(
        ["--config_file", str(REPO / "workflow" / "accelerate" / "fsdp.yaml"), str(REPO / "scripts" / "grpo.py")])
    env = prepare_multi_gpu_env(_validate_launch_command(launch)[0])
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_USE_FSDP")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.activation_checkpointing and plugin.fsdp_version == 2  # what the launch asks for
    paper = load_config(REPO / "params.yaml", REPO / "config" / "paper.yaml")
    args = GRPOConfig(**grpo_arguments(paper["grpo"], tmp_path, seed=0, world_size=8))
    # transformers.Trainer.__init__: "can't both be set to True". The training argument is `activation_checkpointing`
    # in newer transformers (5.24; `gradient_checkpointing` is its deprecated mirror), `gradient_checkpointing` before.
    checkpointing = getattr(args, "activation_checkpointing", args.gradient_checkpointing)
    assert not (plugin.activation_checkpointing and checkpointing)


@pytest.mark.parametrize("answers", [True, False])
def test_the_suite_names_a_slurm_controller_that_makes_every_snakemake_call_wait(tmp_path, answers):
    """tests/conftest.py's closing line: an `scontrol` that hangs (clients installed, no controller) is named."""
    from helpers import slurm_controller_stall

    fake = tmp_path / "scontrol"
    fake.write_text("#!/bin/sh\n" + ("echo MinJobAge=300\n" if answers else "exec sleep 5\n"))
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    warning = slurm_controller_stall(timeout=0.5, env=env)
    assert (warning is None) if answers else ("found no controller within 0.5 s" in warning)
    assert slurm_controller_stall(env={**os.environ, "PATH": str(tmp_path / "empty")}) is None  # no SLURM at all


def test_the_documented_site_file_sends_every_gpu_job_to_the_gpu_partition():
    """sbatch refuses a GPU job on a partition without GPUs: docs/scale.md's site file names the GPU partition for
    every rule that config/paper.yaml gives a `gpu`, and leaves the others on its default (CPU) partition."""
    from giftlab.config import deep_merge, load_config
    from giftlab.resources import rule_resources

    config = deep_merge(load_config(REPO / "params.yaml", REPO / "config" / "paper.yaml"), doc_site())
    rules = set(re.findall(r'job_resources\("([a-z_]+)"\)', "".join(
        path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk"))))
    gpu_rules = {rule for rule in rules if int(rule_resources(config, rule).get("gpu", 0)) > 0}
    assert {"sft", "grpo", "evaluate", "mtbench_answer", "consistency", "reference_cache"} <= gpu_rules
    for rule in rules:
        expected = "h200" if rule in gpu_rules else "cpu"
        assert rule_resources(config, rule)["slurm_partition"] == expected, rule


def test_a_snakemake_killed_under_the_slurm_profile_needs_no_unlock(tmp_path):
    """docs/scale.md: if Snakemake itself dies (a login-node reboot), run the same command again. The SLURM profile
    replaces the default one, so it must turn Snakemake's own lock off too (giftlab.lock's OS lock replaces it);
    else the rerun stops with LockException until someone runs --unlock."""
    import time

    workdir = tmp_path / "ws"
    workdir.mkdir()
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--workflow-profile", str(slurm_profile(tmp_path)), "--executor", "local", "--cores", "1",
           "--configfile", str(REPO / "config" / "smoke.yaml"), "--", "data/tiny/problems.jsonl"]
    proc = subprocess.Popen(cmd, cwd=workdir, env=venv_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (workdir / ".snakemake" / "giftlab.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # onstart took the workspace lock: Snakemake's own, if on, is taken by now
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        proc.kill()
        proc.wait()
    rerun = subprocess.run(cmd, cwd=workdir, env=venv_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and "LockException" not in rerun.stderr, rerun.stderr[-2000:]
    assert (workdir / "data" / "tiny" / "problems.jsonl").exists()


def test_after_a_partial_pull_only_the_pulled_stages_and_their_upstream_must_match(tmp_path):
    """docs/scale.md: `dvc pull --with-deps sft` then `scripts/after_pull.sh phase_sft`. after_pull checks the
    stages behind its phase targets (and upstream), with the real DVC; the stages not pulled may be missing."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "after_pull.sh", repo / "scripts" / "after_pull.sh")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "a": {"cmd": "echo a > a.txt", "outs": ["a.txt"]},
        "b": {"cmd": "cat a.txt > b.txt", "deps": ["a.txt"], "outs": ["b.txt"]}}}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "snakemake").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/snakemake.args"\n')
    (bin_dir / "snakemake").chmod(0o755)
    env = {**venv_env(), "PATH": f"{bin_dir}{os.pathsep}{venv_env()['PATH']}", "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    (repo / "b.txt").unlink()  # stage b was not pulled

    def after_pull(*args):
        return subprocess.run(["bash", "scripts/after_pull.sh", *args], cwd=repo, env=env, capture_output=True,
                              text=True)

    pulled = after_pull("phase_a")
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "snakemake.args").read_text().split("\n")[-2] == "phase_a"
    for args in (("phase_b",), ()):
        refused = after_pull(*args)
        assert refused.returncode == 1 and "not touching anything" in refused.stderr
    assert "run 'dvc pull --with-deps b'" in after_pull("phase_b").stderr
    missing = after_pull("phase_world")  # a phase this dvc.yaml has no stage for (the paper branch's world)
    assert missing.returncode == 2 and "phase_world has no DVC stage 'world' in this dvc.yaml (its stages: a b)" \
        in missing.stderr


def test_the_slurm_profile_keeps_squeue_only_where_finished_jobs_outlive_the_status_interval():
    """snakemake-executor-plugin-slurm (2.6.1 and 2.8.0) checks job states at most 180 s apart and keeps `squeue` as
    the status command only where MinJobAge >= 3 x slurm-init-seconds-before-status-checks; a job that leaves squeue
    between two checks counts as running for ever. So 3 x that setting must cover the 180 s."""
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["slurm-status-command"] == "squeue"
    assert 3 * profile["slurm-init-seconds-before-status-checks"] >= 180


def test_after_pull_without_dvc_on_path_says_so_in_one_line(tmp_path):
    """Without the virtualenv active, "dvc: command not found" was followed by "the workspace does not match
    dvc.lock": a missing tool is named instead."""
    bin_dir = tmp_path / "bin"  # bash and coreutils only
    bin_dir.mkdir()
    for tool in ("dirname", "bash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = subprocess.run(["bash", str(REPO / "scripts" / "after_pull.sh")], cwd=REPO, capture_output=True,
                            text=True, env={"PATH": str(bin_dir)})
    assert result.returncode == 2
    assert result.stderr.strip() == ("after_pull: no 'dvc' on PATH: activate the project's virtualenv (README, "
                                     "set-up) first.")
