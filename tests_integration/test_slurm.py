"""The pipeline through a real SLURM cluster: the SLURM profile (workflow/profiles/slurm) and its executor plugin on
the one-node cluster of scripts/slurm_cluster.sh, against a local run of the same targets.

One SFT run (and the GIFT run that Table 3 pairs it with), its GRPO, evaluations and Table 3 on config/smoke.yaml +
config/slurm-local.yaml, run twice in fresh copies of this working tree: locally, then through SLURM. While the
SLURM run trains GRPO, the test cancels that job with `scancel` right after its first complete checkpoint. Checked:
(a) every job ran as a SLURM job (sacct, under the account and partition of config/slurm-local.yaml); (b) Snakemake
resubmitted the cancelled job (the profile's `retries`) and GRPO resumed from a complete checkpoint in work/;
(c) the metrics, samples, step logs, TensorBoard scalars, tables and exported weights equal the local run's, leaving
out only wall-clock timings, provenance records and what counts one session of a resumed trainer (SESSION_KEYS).
Beside them: the time-limit signal config/paper.yaml asks for (`--signal=TERM@...`, no `B:`) reaches a rule's command
in its job step and leaves it longer than KillWait to save; a second Snakemake in a workspace leaves the queued jobs
of its run alone.

Measured on a 2-core machine: docs/slurm-test-cluster.md. Skips (one line) where SLURM cannot run: not root and
no cluster running, or no apt-get to install it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
STATE = Path(os.environ.get("GIFTLAB_SLURM_DIR", "/tmp/giftlab-slurm"))
BIN = Path(sys.executable).parent  # the venv: rules call `python`, SLURM jobs inherit PATH (sbatch --export=ALL)

TARGETS = ["results/tables/table3.csv",                       # SFT and GIFT before RL: 2 SFT runs, 2 evaluations
           "results/rl/qwen/sft/metrics.json",                # GRPO from the SFT run ...
           "results/eval/rl/qwen/sft/tiny_id.summary.json"]   # ... and its evaluation
CONFIGS = ["config/smoke.yaml", "config/slurm-local.yaml"]
# Smoke GRPO (2 steps, under a second) ends before anyone could cancel it: this run trains 48 steps with a
# checkpoint every 4 (about 10 s), in both runs, so a cancel after the first checkpoint lands mid-training.
LONG_GRPO = {"grpo": {"max_steps": 48, "save_steps": 4}}
GRPO_WORK = Path("work/rl/qwen/sft")
GRPO_COMMENT = "rule_grpo_wildcards_qwen_sft"   # the executor's sbatch --comment: rule_<rule>_wildcards_<values>

# Keys that differ between any two runs: wall-clock timings (matched by name) and provenance records (git state,
# timestamps, package lists, hashes of files that hold provenance). Everything else must be equal.
TIMING = re.compile(r"seconds|runtime|per_second|step_time")
# What a trainer counts for the session that wrote its metrics, not for the run: where it resumed from, and
# GRPO's grading counters (`grading`, `dynamics_grading` count the gradings of the last session only, so a
# resumed run reports fewer than an uninterrupted one; the weights, step log and dynamics are the same).
SESSION_KEYS = {"resumed_from", "resumed_from_step", "grading", "dynamics_grading"}
TRAINER_METRICS = ("results/pretrain/", "results/sft/", "results/rl/")
# GRPO's per-step count of gradings that timed out: under heavy load the cascade's inner 3 s limits can fire. The
# rewards, and so the weights, are compared. (Errors are compared: scancel's SIGTERM reaches every process of the
# job; the reward pool's grading workers and their forkserver ignore it, so the step the trainer finishes is graded
# in full.)
UNSTABLE_COUNTS = {"grading/timeouts"}


# ------------------------------------------------------------------ cluster and working copies


@pytest.fixture(scope="module")
def slurm_env():
    """Start the test cluster (or find it running); the environment for Snakemake and SLURM clients."""
    if sys.platform != "linux" or shutil.which("bash") is None:
        pytest.skip("SLURM test cluster: needs Linux and bash")
    try:
        started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=1500)
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/slurm_cluster.sh start did not finish in 25 min")
    if started.returncode == 3:  # cannot run here (not root and nothing running, no apt-get): one line
        pytest.skip((started.stderr.strip().splitlines() or ["SLURM cannot run here"])[-1])
    assert started.returncode == 0, f"scripts/slurm_cluster.sh start failed:\n{started.stdout}{started.stderr}"
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SLURM_CONF"] = str(STATE / "etc" / "slurm.conf")
    return env


def copy_worktree(dest: Path) -> Path:
    """A fresh copy of this working tree: tracked and untracked-but-not-ignored files, as committed or not."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file() or src.is_symlink():  # tracked files deleted in the working tree are skipped
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel, follow_symlinks=False)
    (dest / "config" / "long_grpo.yaml").write_text(yaml.safe_dump(LONG_GRPO))
    return dest


def snakemake_cmd(*args: str) -> list[str]:
    return [str(BIN / "snakemake"), *TARGETS, "--configfile", *CONFIGS, "config/long_grpo.yaml", *args]


def tail(path: Path, n: int = 6000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else f"({path} missing)"


def job_logs(workdir: Path) -> str:
    return "\n".join(f"== {p}\n{tail(p, 2000)}" for p in sorted((workdir / "logs").rglob("*.log")))


def stop(proc: subprocess.Popen, log: Path, env) -> None:
    """End a Snakemake run left running by a failed check, and its SLURM jobs. SIGTERM alone is not enough:
    Snakemake then waits for the jobs it believes are running, which a cancelled job is for ever (see below)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    run_id = re.search(r"SLURM run ID: (\S+)", tail(log, 10**7))
    if run_id:  # the executor names every job of a run after the run's id
        subprocess.run(["scancel", "--name", run_id.group(1)], env=env)


def squeue_job(env, comment: str) -> str | None:
    """SLURM id of the running job whose --comment is ``comment``."""
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], env=env, capture_output=True,
                         text=True).stdout
    ids = [line.split("|", 1)[0] for line in out.splitlines() if line.split("|", 1)[-1] == comment]
    return ids[0] if ids else None


def complete_checkpoints(work: Path) -> list[int]:
    return sorted(int(p.parent.name.split("-")[1]) for p in work.glob("checkpoint-*/CHECKPOINT_COMPLETE"))


# ------------------------------------------------------------------ the two runs


@pytest.fixture(scope="module")
def local_run(slurm_env, tmp_path_factory):
    workdir = copy_worktree(tmp_path_factory.mktemp("local"))
    # The default workflow profile (workflow/profiles/default): local executor, 2 cores.
    result = subprocess.run(snakemake_cmd("--cores", "2"), cwd=workdir, env=slurm_env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"local run failed:\n{result.stderr[-4000:]}\n{job_logs(workdir)[-6000:]}"
    return {"workdir": workdir, "jobs": job_stats(result.stdout + result.stderr)}


def job_stats(text: str) -> dict[str, int]:
    """Snakemake's "Job stats" table: jobs per rule."""
    stats = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", stats, flags=re.M)}


@pytest.fixture(scope="module")
def slurm_run(slurm_env, local_run, tmp_path_factory):
    """The same targets through the SLURM profile; GRPO's job is cancelled once, after its first checkpoint."""
    workdir = copy_worktree(tmp_path_factory.mktemp("slurm"))
    log = workdir / "snakemake.log"  # read it while the test runs: tail -f <basetemp>/slurm0/snakemake.log
    # The profile as shipped (its job states come from squeue: with sacct, the plugin's default, a cancelled job is
    # never seen to end, test_executor_sees_a_cancelled_job_end_through_sacct), plus two settings of the executor
    # plugin: check job states 2 s after a submission (default 40 s, which would make this chain of short jobs
    # crawl), and keep SLURM's job logs.
    cmd = snakemake_cmd("--workflow-profile", "workflow/profiles/slurm", "--slurm-init-seconds-before-status-checks",
                        "2", "--slurm-keep-successful-logs")
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=slurm_env, stdout=out, stderr=subprocess.STDOUT, text=True)
        cancelled = None
        try:
            cancelled = cancel_grpo_after_first_checkpoint(proc, workdir, slurm_env, log)
            proc.wait(timeout=max(60, 900 - (time.monotonic() - started)))
        finally:
            stop(proc, log, slurm_env)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"SLURM run failed (rc {proc.returncode}):\n{text[-6000:]}\n{job_logs(workdir)[-6000:]}"
    run_id = re.search(r"SLURM run ID: (\S+)", text)
    assert run_id, text[-3000:]
    return {"workdir": workdir, "log": text, "run_id": run_id.group(1), "cancelled": cancelled,
            "seconds": round(time.monotonic() - started)}


def cancel_grpo_after_first_checkpoint(proc, workdir: Path, env, log: Path) -> dict:
    """Wait for GRPO's SLURM job and its first complete checkpoint in work/, then `scancel` it mid-training."""
    work, deadline, job = workdir / GRPO_WORK, time.monotonic() + 600, None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"Snakemake ended (rc {proc.returncode}) before GRPO could be cancelled:\n{tail(log)}")
        job = job or squeue_job(env, GRPO_COMMENT)
        steps = complete_checkpoints(work)
        if job and steps:
            subprocess.run(["scancel", job], env=env, check=True)
            assert not (workdir / "models" / "rl" / "qwen" / "sft").exists(), \
                "GRPO finished before it could be cancelled: lengthen LONG_GRPO"
            return {"job": job, "checkpoint": steps[-1]}
        time.sleep(0.1)
    pytest.fail(f"GRPO never reached a complete checkpoint under SLURM in 10 min:\n{tail(log)}")


# ------------------------------------------------------------------ checks


def sacct_jobs(env, run_id: str) -> list[dict]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "--name", run_id, "-S", "now-1days",
                          "-o", "JobIDRaw,Comment,State,Account,Partition,AllocCPUS"],
                         env=env, capture_output=True, text=True, check=True).stdout
    keys = ["id", "comment", "state", "account", "partition", "cpus"]
    return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]


def rule_of(comment: str) -> str:
    return re.sub(r"^rule_", "", comment).split("_wildcards_")[0]


def test_every_job_ran_as_a_slurm_job_with_the_configured_resources(slurm_run, local_run, slurm_env):
    jobs = sacct_jobs(slurm_env, slurm_run["run_id"])
    completed: dict[str, int] = {}
    for job in jobs:
        if job["state"] == "COMPLETED":
            completed[rule_of(job["comment"])] = completed.get(rule_of(job["comment"]), 0) + 1
    assert completed == local_run["jobs"], jobs  # the same jobs as the local run, each COMPLETED once
    # config/slurm-local.yaml's resources.default reached sbatch
    assert {(j["account"], j["partition"], j["cpus"]) for j in jobs} == {("giftlab", "debug", "1")}, jobs


def test_a_cancelled_job_is_resubmitted_and_resumes_from_its_last_complete_checkpoint(slurm_run, slurm_env):
    cancelled = slurm_run["cancelled"]
    grpo = [j for j in sacct_jobs(slurm_env, slurm_run["run_id"]) if j["comment"] == GRPO_COMMENT]
    states = {j["id"]: j["state"] for j in grpo}
    assert states.get(cancelled["job"], "").startswith("CANCELLED"), grpo
    retried = [j for j in grpo if int(j["id"]) > int(cancelled["job"])]
    assert [j["state"] for j in retried] == ["COMPLETED"], grpo  # one new submission, by Snakemake (retries)
    metrics = json.loads((slurm_run["workdir"] / "results" / "rl" / "qwen" / "sft" / "metrics.json").read_text())
    resumed = metrics["resumed_from"]
    assert resumed and Path(resumed).parent == GRPO_WORK, resumed
    step = int(Path(resumed).name.split("-")[1])
    # from a complete checkpoint the cancelled job wrote: the one seen before scancel, or the one the trainer saves
    # on SIGTERM at the end of the step under way (giftlab.training.preemption); never the start, never the end
    assert cancelled["checkpoint"] <= step < LONG_GRPO["grpo"]["max_steps"], (cancelled, resumed)
    assert metrics["steps"] == LONG_GRPO["grpo"]["max_steps"]
    # every step logged once more after the resume is dropped, none missing (the last row is the run summary)
    steps = [row["step"] for row in metrics["log"] if "train_runtime" not in row]
    assert steps == list(range(1, metrics["steps"] + 1)), steps


def comparable(rel: str, value):
    """``value`` without timings and provenance (and, in trainer metrics, per-session counts)."""
    drop = SESSION_KEYS if rel.startswith(TRAINER_METRICS) else set()

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items()
                    if k != "provenance" and k not in drop and k not in UNSTABLE_COUNTS and not TIMING.search(k)}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    return strip(value)


def tensorboard_scalars(folder: Path) -> dict:
    """(tag, step) -> value of every event file in ``folder``, later sessions (a resumed run's) overriding earlier
    ones, as TensorBoard shows them; event files themselves differ by name (time, pid) and wall-clock stamps."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    values = {}
    for events in sorted(folder.glob("events.out.tfevents.*"), key=lambda p: int(p.name.split(".")[3])):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if not TIMING.search(value.tag) and value.tag.removeprefix("train/") not in UNSTABLE_COUNTS:
                    values[(value.tag, event.step)] = value.SerializeToString()
    return values


def content(root: Path, rel: str):
    path = root / rel
    if path.is_dir():  # a tensorboard folder
        return tensorboard_scalars(path)
    if rel.endswith(".json"):
        return comparable(rel, json.loads(path.read_text()))
    if rel.endswith(".jsonl"):
        return [comparable(rel, json.loads(line)) for line in path.read_text().splitlines()]
    return path.read_bytes()


def test_results_equal_a_local_run_of_the_same_targets(slurm_run, local_run):
    slurm, local_run = slurm_run["workdir"], local_run["workdir"]
    files = sorted({str((p.parent if p.parent.name == "tensorboard" else p).relative_to(local_run))
                    for folder in ("results", "models") for p in (local_run / folder).rglob("*")
                    if p.is_file() and not p.name.endswith(".provenance.json") and p.name != ".snakemake_timestamp"})
    assert any(f.endswith("table3.csv") for f in files) and any(f.endswith(".safetensors") for f in files), files
    missing = [f for f in files if not (slurm / f).exists()]
    assert not missing, missing
    different = [f for f in files if content(local_run, f) != content(slurm, f)]
    assert not different, different


SLEEPY = """\
rule sleepy:
    output: "done.txt"
    resources: slurm_account="giftlab", slurm_partition="debug", runtime=5, mem_mb=100, cpus_per_task=1
    shell: "sleep 10 && touch {output}"
"""


@pytest.mark.xfail(strict=True, reason="snakemake-executor-plugin-slurm 2.8.0 compares sacct's State with "
                   "'CANCELLED', but sacct reports a cancelled job as 'CANCELLED by <uid>': the job stays "
                   "'running' for ever, never retried, and Snakemake never ends. XPASS = fixed upstream: the "
                   "profile's slurm-status-command: squeue may go (and docs/slurm-test-cluster.md's note)")
def test_executor_sees_a_cancelled_job_end_through_sacct(slurm_env, tmp_path):
    """The plugin's default status command (sacct) after a `scancel`: Snakemake should retry the job and finish."""
    (tmp_path / "Snakefile").write_text(SLEEPY)
    cmd = [str(BIN / "snakemake"), "--executor", "slurm", "--jobs", "1", "--retries", "1",
           "--slurm-init-seconds-before-status-checks", "2", "--slurm-status-command", "sacct"]
    with (tmp_path / "snakemake.log").open("w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=slurm_env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while (job := squeue_job(slurm_env, "rule_sleepy")) is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert job, tail(tmp_path / "snakemake.log")
            subprocess.run(["scancel", job], env=slurm_env, check=True)
            # fixed: the cancel is seen at a status check within ~12 s, the retry takes ~20 s (10 s of sleep)
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"Snakemake still waits for cancelled job {job} after 60 s")
        finally:
            stop(proc, tmp_path / "snakemake.log", slurm_env)
    assert proc.returncode == 0 and (tmp_path / "done.txt").exists(), tail(tmp_path / "snakemake.log")


# A job whose process saves for longer than KillWait when SIGTERM comes, under a 3-minute limit with the signal
# asked 100 s before it (SLURM sends it up to 60 s early: 20-80 s into the job, after the handler is set).
SIGNALLED = """\
shell.prefix({PREFIX!r})

rule signalled:
    output: "done.txt"
    log: "signalled.log"
    resources: slurm_account="giftlab", slurm_partition="debug", runtime=3, mem_mb=100, cpus_per_task=1,
               slurm_extra="--signal=TERM@100"
    shell: "python3 save_on_term.py {SAVE_S} > {log} 2>&1"
"""
SAVE_ON_TERM = """\
import os, pathlib, signal, sys, time
start = time.time()
shell = os.getppid()  # the rule's bash
def saved(signum, frame):
    got = time.time()
    time.sleep(float(sys.argv[1]))  # the checkpoint's save
    pathlib.Path("saved.txt").write_text(f"{got - start:.1f} {time.time() - got:.1f} {os.environ.get('SLURM_STEP_ID')} "
                                         f"{int(os.getppid() == shell)}")
    sys.exit(75)
signal.signal(signal.SIGTERM, saved)
while time.time() - start < 175:
    time.sleep(0.5)
pathlib.Path("done.txt").write_text("no signal")
"""


def test_a_time_limit_signal_reaches_the_job_step_and_leaves_it_longer_than_killwait(slurm_env, tmp_path):
    """config/paper.yaml's sft and grpo jobs ask sbatch for `--signal=TERM@1200` (no `B:`) so that their trainers
    save a checkpoint before the time limit (docs/scale.md, "Checkpoint on SIGTERM"). Through the SLURM executor the
    rule's command runs as a job step, which that signal reaches, while the Snakemake process in the batch step is
    not signalled and waits for it: the process has until the time limit to save, not KillWait."""
    kill_wait = re.search(r"KillWait\s*=\s*(\d+)", subprocess.run(["scontrol", "show", "config"], env=slurm_env,
                                                                   capture_output=True, text=True).stdout)
    save_s = int(kill_wait.group(1)) + 5 if kill_wait else 35
    from giftlab.resources import JOB_SHELL_PREFIX  # the Snakefile's shell.prefix

    snakefile = SIGNALLED.replace("{SAVE_S}", str(save_s)).replace("{PREFIX!r}", repr(JOB_SHELL_PREFIX))
    (tmp_path / "Snakefile").write_text(snakefile)
    (tmp_path / "save_on_term.py").write_text(SAVE_ON_TERM)
    cmd = [str(BIN / "snakemake"), "--executor", "slurm", "--jobs", "1", "--latency-wait", "5",
           "--slurm-init-seconds-before-status-checks", "2", "--slurm-status-command", "squeue"]
    result = subprocess.run(cmd, cwd=tmp_path, env=slurm_env, capture_output=True, text=True, timeout=300)
    assert (tmp_path / "saved.txt").exists(), (result.stdout + result.stderr)[-3000:]
    signalled_after, saving, step, in_shell = (tmp_path / "saved.txt").read_text().split()
    assert float(saving) >= save_s and step != "None"  # a whole save longer than KillWait, inside a job step
    assert float(signalled_after) < 100  # TERM@100 of a 180 s limit, up to 60 s early
    # the rule's bash (signalled too) waited for the save: without the prefix's trap it died at once, the step's
    # Snakemake failed the job, the job ended and the save went on orphaned, outside it (this cluster tracks processes
    # with proctrack/linuxproc; under proctrack/cgroup the job's end kills it)
    assert in_shell == "1"
    assert result.returncode != 0 and not (tmp_path / "done.txt").exists()  # exit 75: no output, a retry resumes


# Three SLURM jobs on the cluster's two CPUs (one waits in the queue), and a rule whose output is already there.
QUEUED = """\
rule all:
    input: expand("done_{i}.txt", i=range(3))

rule wait:
    output: "done_{i}.txt"
    resources: slurm_account="giftlab", slurm_partition="debug", runtime=5, mem_mb=100, cpus_per_task=1
    shell: "sleep 15 && touch {output}"

rule built:
    output: "built.txt"
    shell: "touch {output}"
"""


def test_another_snakemake_in_the_workspace_leaves_the_queued_jobs_of_a_run_alone(slurm_env, tmp_path):
    """A second Snakemake started in a workspace while a run's jobs wait in the queue (here one with nothing to do;
    the pipeline's refused run or a `kill -9` rerun end alike) must not fail them: the SLURM plugin's exit clean-up
    deleted the still-empty log folders of queued jobs, which then failed at start (ExitCode 0:53, no log), each
    costing a retry. The profile (workflow/profiles/slurm) turns that clean-up off; retries off here, so a failed job
    fails the run."""
    (tmp_path / "Snakefile").write_text(QUEUED)
    (tmp_path / "built.txt").touch()
    profile = ["--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"), "--retries", "0",
               "--slurm-init-seconds-before-status-checks", "2"]
    log = tmp_path / "snakemake.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN / "snakemake"), *profile], cwd=tmp_path, env=slurm_env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                pending = subprocess.run(["squeue", "-h", "-t", "PENDING", "-o", "%i"], env=slurm_env,
                                         capture_output=True, text=True).stdout.split()
                if pending:
                    break
                time.sleep(0.2)
            assert pending, f"no job waited in the queue:\n{tail(log)}"
            other = subprocess.run([str(BIN / "snakemake"), *profile, "built.txt"], cwd=tmp_path, env=slurm_env,
                                   capture_output=True, text=True, timeout=120)
            assert other.returncode == 0 and "Nothing to be done" in other.stdout + other.stderr, other.stderr[-2000:]
            proc.wait(timeout=180)
        finally:
            stop(proc, log, slurm_env)
    assert proc.returncode == 0, tail(log)
    assert all((tmp_path / f"done_{i}.txt").exists() for i in range(3)), tail(log)
