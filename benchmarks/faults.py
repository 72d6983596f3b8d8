"""Fault injection over the real pipeline (issue 18): what each injected fault does to a run, and whether anything
is lost or silently wrong once the run is finished the documented way.

    python benchmarks/faults.py                          # every fault, 20 random kill -9 (18-22 min on 2 cores)
    python benchmarks/faults.py --kills 3 --only kill,truncate_json     # a quick subset
    python benchmarks/faults.py --report docs/faults.md  # also write the report there (with the command and commit)

The pipeline is the smoke profile trimmed to SFT and GIFT on one backbone (``FAULT_PROFILE``), run by Snakemake from
this checkout, each case in its own workspace under ``--work``. An uninterrupted run is the reference. After each
fault the case does only what a user is told to do (rerun the same command; or what the one-line refusal says),
then compares every output with the reference by content (:func:`digest`): JSON without its provenance and
wall-clock timings and the step it resumed from, provenance sidecars by their outputs' hashes, figures drawn with ``SOURCE_DATE_EPOCH`` fixed,
TensorBoard event files (wall-clock stamped) left out. Two uninterrupted runs are identical by this measure. "lost" is an output the reference has and the finished case does not; "wrong" one whose content differs.
Both must be empty.

Faults: kill -9 of the whole run (Snakemake and its jobs) at a uniformly random time, over several runs; SIGTERM
(SLURM's preemption signal) to an SFT and a GRPO job after their first checkpoint; a second
run started beside a running one; a truncated result JSON, a truncated checkpoint, a deleted output; a full disk (a
size-limited tmpfs, root only, else reported as not run); a grading worker that hangs or is killed mid-item; a DVC
remote that disappears in the middle of a push.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMOKE = REPO / "config" / "smoke.yaml"
# smoke, trimmed: SFT and GIFT only, no Direct baselines, three MT-Bench dialogues (32 jobs)
FAULT_PROFILE = {"sft": {"methods": ["sft", "gift"], "direct_sft": False},
                 "grpo": {"direct_rl": False, "save_steps": 1},  # a runtime key: a checkpoint a step to preempt at
                 "mtbench": {"n_dialogues": 3}}
# JSON keys that record how a run went (wall-clock measurements, where it resumed), not what it produced
VOLATILE = re.compile(r"seconds|runtime|_time$|^time$|elapsed|per_second|created|duration|timestamp|resumed", re.I)
OUTPUT_ROOTS = ("data", "models", "results", "figures")


@dataclass
class Case:
    fault: str
    outcome: str
    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    run: bool = True

    def row(self) -> str:
        outcome = self.outcome.replace("|", "\\|")
        if not self.run:
            return f"| {self.fault} | {outcome} | not run |"
        verdict = "nothing" if not (self.lost or self.wrong) else "; ".join(
            [*(f"lost {p}" for p in self.lost[:3]), *(f"wrong {p}" for p in self.wrong[:3])])
        return f"| {self.fault} | {outcome} | {verdict} |"


# ---------------------------------------------------------------------------------------------- comparing outputs

def _normalise(value):
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items() if k != "provenance" and not VOLATILE.search(k)}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _content(path: Path) -> bytes:
    if path.name.endswith(".provenance.json"):  # a sidecar: its outputs' hashes; its inputs carry their provenance
        record = json.loads(path.read_text())
        return json.dumps({"outputs": record.get("outputs"), "inputs": sorted(record.get("inputs") or {})},
                          sort_keys=True).encode()
    if path.suffix == ".json":
        return json.dumps(_normalise(json.loads(path.read_text())), sort_keys=True).encode()
    if path.suffix == ".jsonl":
        return "\n".join(json.dumps(_normalise(json.loads(line)), sort_keys=True)
                         for line in path.read_text().splitlines() if line.strip()).encode()
    return path.read_bytes()


def digest(root: Path) -> dict[str, str]:
    """{output path: sha256 of its content} of a workspace (see the module docstring for what is left out)."""
    out = {}
    for top in OUTPUT_ROOTS:
        for path in sorted((root / top).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if (not path.is_file() or "tensorboard" in path.parts or path.name == ".snakemake_timestamp"
                    or path.name.startswith(".")):
                continue
            try:
                out[rel] = hashlib.sha256(_content(path)).hexdigest()
            except (ValueError, UnicodeDecodeError):
                out[rel] = "unreadable"
    return out


def compare(reference: dict[str, str], root: Path, case: Case) -> Case:
    got = digest(root)
    case.lost = sorted(set(reference) - set(got))
    case.wrong = sorted(p for p in set(reference) & set(got) if reference[p] != got[p])
    return case


# ---------------------------------------------------------------------------------------------- running the pipeline

def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", DVC_NO_ANALYTICS="1",
             SOURCE_DATE_EPOCH="1700000000", PYTHONHASHSEED="0")
    return e


def command(work: Path, profile: Path, *extra: str) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2",
            "--configfile", str(SMOKE), str(profile), *extra]


def start(work: Path, profile: Path, *extra: str) -> subprocess.Popen:
    """The pipeline in the background, in its own session (so a kill reaches every job); its output in a log file
    (``proc.args_log``)."""
    path = work / f"run-{time.monotonic_ns()}.log"
    with open(path, "w") as log:
        proc = subprocess.Popen(command(work, profile, *extra), cwd=work, env=env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, text=True)
    proc.args_log = str(path)
    return proc


def run(work: Path, profile: Path, *extra: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(command(work, profile, *extra), cwd=work, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def kill_group(proc: subprocess.Popen) -> None:
    """kill -9 of Snakemake and every job it started (its session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(("Using ", "Config file"))]
    return lines[-1].strip() if lines else ""


def new_workspace(base: Path, name: str) -> Path:
    work = base / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


# ---------------------------------------------------------------------------------------------- the faults

def _left_after(log: Path, before: float) -> float:
    """The share of the workspace's work still to do after a killed attempt: Snakemake's last "a of b steps" line
    says how much of that attempt's share it finished."""
    found = re.findall(r"(\d+) of (\d+) steps", log.read_text(errors="replace")) if log.is_file() else []
    if not found:
        return before
    done, total = map(int, found[-1])
    return before * (total - done) / total


def case_kills(base: Path, profile: Path, reference: dict, seconds: float, kills: int, per_workspace: int,
               rng: random.Random) -> Case:
    """``kills`` kill -9, ``per_workspace`` per workspace, each at a uniformly random time within what the attempt
    has left to run (estimated from the reference's wall time and Snakemake's progress), each followed by the same
    command again; then the run is finished by that command."""
    done, rerun_failures, workspaces = 0, 0, 0
    lost, wrong = set(), set()
    while done < kills:
        work = new_workspace(base, f"kill{workspaces}")
        workspaces += 1
        left = 1.0
        for _ in range(min(per_workspace, kills - done)):
            at = rng.uniform(1.0, max(2.0, left * seconds))
            proc = start(work, profile)
            try:
                proc.wait(timeout=at)
                break  # the run ended before its kill time: nothing left to kill here
            except subprocess.TimeoutExpired:
                kill_group(proc)
                done += 1
                left = _left_after(Path(proc.args_log), left)
        final = run(work, profile)
        rerun_failures += final.returncode != 0
        result = compare(reference, work, Case("", ""))
        lost |= set(result.lost)
        wrong |= set(result.wrong)
    outcome = (f"{done} kills in {workspaces} workspaces; every rerun of the same command finished the run "
               f"(no manual step)" if not rerun_failures else f"{rerun_failures} reruns failed")
    return Case(f"kill -9 of the whole run at a random time (× {done})", outcome, sorted(lost), sorted(wrong))


def _job_pid(script: str, work_dir: str) -> int | None:
    """The PID of the job running ``scripts/<script>.py`` on ``work_dir`` (its ``--work``), read from /proc."""
    for entry in Path("/proc").iterdir():
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")]
        except (OSError, ValueError):
            continue
        if any(a.endswith(f"scripts/{script}.py") for a in argv) and work_dir in argv:
            return int(entry.name)
    return None


def case_preempt(base: Path, profile: Path, reference: dict, rule: str, run_id: str) -> Case:
    """SLURM's preemption signal (SIGTERM, what ``--signal`` and a preemption send before SIGKILL) to one training
    job (``rule`` sft or grpo, ``run_id`` backbone/run) once its first complete checkpoint is written: the job
    saves, exits 75 and writes no output, Snakemake ends the run as failed; the same command again resumes the job
    from that checkpoint."""
    fault = f"SIGTERM (a preemption) to the {rule.upper()} job of {run_id} after its first checkpoint"
    work = new_workspace(base, f"preempt_{rule}")
    run_dir = f"work/{'sft' if rule == 'sft' else 'rl'}/{run_id}"
    log = work / "logs" / rule / f"{run_id}.log"
    proc = start(work, profile)
    signalled = False
    while proc.poll() is None and not signalled:
        if _mid_training_checkpoint(work / run_dir) and (pid := _job_pid(rule, run_dir)) is not None:
            os.kill(pid, signal.SIGTERM)
            signalled = True
        time.sleep(0.05)
    proc.wait()
    said = re.findall(r"preempted at step \d+", log.read_text(errors="replace")) if log.is_file() else []
    final = run(work, profile)
    outcome = (f"the job: \"{said[-1] if said else 'no preemption logged'}\"; the run: exit {proc.returncode}; the "
               f"same command again: exit {final.returncode}") if signalled else "its training ended before a signal"
    return compare(reference, work, Case(fault, outcome))


def _mid_training_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a complete checkpoint before the run's last step (training still under way)."""
    for marker in run_dir.glob("checkpoint-*/CHECKPOINT_COMPLETE"):
        try:
            state = json.loads((marker.parent / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        if state.get("global_step", 0) < state.get("max_steps", 0):
            return True
    return False


def case_concurrent(base: Path, profile: Path, reference: dict) -> Case:
    work = new_workspace(base, "concurrent")
    first = start(work, profile)
    time.sleep(8)  # the first run holds the workspace lock once its first job starts
    second = run(work, profile, timeout=300)
    first.wait()
    outcome = (f"second run: exit {second.returncode}, \"{last_line(second.stdout + second.stderr)[:90]}\"; "
               f"first run: exit {first.returncode}")
    return compare(reference, work, Case("a second `snakemake` started beside a running one", outcome))


def finished_copy(base: Path, reference_dir: Path, name: str) -> Path:
    work = new_workspace(base, name)
    shutil.copytree(reference_dir, work, dirs_exist_ok=True, symlinks=True)
    return work


def case_damage(base: Path, profile: Path, reference: dict, reference_dir: Path, name: str, fault: str,
                damage) -> Case:
    """Damage a finished workspace, run the same command (it must refuse in one line or rebuild), then do what the
    refusal says (`snakemake --force <the named output>`) and run the same command again."""
    work = finished_copy(base, reference_dir, name)
    target = damage(work)
    first = run(work, profile)
    said = last_line(first.stdout + first.stderr)
    if first.returncode != 0:
        forced = run(work, profile, "--force", "--", target)
        second = run(work, profile)
        outcome = (f"next run stops before any job: \"{said[:110]}…\"; `snakemake --force {target}`: exit "
                   f"{forced.returncode}, then the same command: exit {second.returncode}")
    else:
        outcome = f"next run: exit 0 ({said[:90]})"
    return compare(reference, work, Case(fault, outcome))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def case_full_disk(base: Path, profile: Path, reference: dict, size_mb: int) -> Case:
    fault = f"a full disk (the workspace on a {size_mb} MB tmpfs)"
    if os.geteuid() != 0:
        return Case(fault, "needs root to mount a tmpfs", run=False)
    work = new_workspace(base, "fulldisk")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(work)], check=True)
    try:
        first = run(work, profile)
        full = "No space left on device" in first.stdout + first.stderr or any(
            "No space left on device" in p.read_text(errors="replace") for p in (work / "logs").rglob("*.log"))
        verify = subprocess.run([sys.executable, str(REPO / "scripts" / "verify.py"), str(work)], env=env(),
                                capture_output=True, text=True)
        subprocess.run(["mount", "-o", "remount,size=2g", str(work)], check=True)
        second = run(work, profile)
        outcome = (f"run fails (exit {first.returncode}, ENOSPC {'reported' if full else 'not seen'}); verify then: "
                   f"\"{last_line(verify.stderr)}\"; with space, the same command: exit {second.returncode}")
        return compare(reference, work, Case(fault, outcome))
    finally:
        subprocess.run(["umount", "-l", str(work)], check=False)


def case_grading_workers() -> list[Case]:
    """The reward/grading pool: a hostile answer that never finishes, and a worker killed in the middle of one."""
    sys.path.insert(0, str(REPO / "src"))
    from giftlab.rewards import GradingPool

    tower = r"\boxed{2^{3^{4^{5^{6}}}}}"  # a power tower: sympy never finishes it
    cases = []
    with GradingPool(workers=1, timeout=3.0) as pool:
        out = pool.grade_many([r"\boxed{3}", tower, r"\boxed{5}"], ["3", "7", "4"])
        ok = [r.correct for r in out] == [True, False, False] and out[1].timed_out and not out[1].correct
        cases.append(Case("a grading worker that hangs (an answer sympy never finishes)",
                          f"that answer timed out after 3 s and scored 0 ({'as expected' if ok else out}); the pool "
                          f"replaced the worker ({pool.stats['restarts']} restart) and graded the rest",
                          wrong=[] if ok else ["grades"]))
    with GradingPool(workers=1, timeout=60.0) as pool:
        pool.grade(r"\boxed{1}", "2")  # worker up
        box: dict = {}
        thread = threading.Thread(target=lambda: box.setdefault("out", pool.grade_many(
            [tower, r"\boxed{3}", r"\boxed{4}"], ["7", "3", "5"])))
        thread.start()
        deadline = time.monotonic() + 20
        while not pool.busy_worker_pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # stuck in the tower
        victim = pool.busy_worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        thread.join(120)
        out = box.get("out") or []
        ok = (len(out) == 3 and [r.correct for r in out] == [False, True, False] and "died" in (out[0].error or "")
              and victim not in pool.worker_pids())
        cases.append(Case("a grading worker killed (SIGKILL) in the middle of an item",
                          f"the item it held is an error (\"{(out[0].error or '')[:50]}\"), scored 0; a new worker "
                          f"graded the other {len(out) - 1} ({'as expected' if ok else [(r.correct, r.error) for r in out]})",
                          wrong=[] if ok else ["grades"]))
    return cases


def case_dvc_remote(base: Path, reference_dir: Path, reference: dict) -> Case:
    """Push the finished outputs to a local DVC remote that is moved away mid-push; push again once it is back;
    a clone pulls them."""
    repo = new_workspace(base, "dvc")
    for top in ("results", "figures", "models"):
        shutil.copytree(reference_dir / top, repo / top, symlinks=True)
    remote = base / "dvc-remote"
    shutil.rmtree(remote, ignore_errors=True)
    remote.mkdir()
    git = lambda *a, cwd=repo: subprocess.run(["git", *a], cwd=cwd, env=env(), check=True, capture_output=True)
    dvc = lambda *a, cwd=repo, check=True: subprocess.run([str(BIN / "dvc"), *a], cwd=cwd, env=env(), check=check,
                                                          capture_output=True, text=True)
    git("init", "-q", "-b", "main")
    git("config", "user.email", "faults@example.invalid")
    git("config", "user.name", "faults")
    dvc("init", "-q")
    dvc("remote", "add", "-d", "shared", str(remote))
    dvc("add", "-q", "results", "figures", "models")
    git("add", "-A")
    git("commit", "-qm", "outputs")
    moved = base / "dvc-remote.gone"
    shutil.rmtree(moved, ignore_errors=True)

    def pull_the_rug() -> None:
        """Once the push has written its first file, the remote's folder goes away and a file takes its path (a
        share unmounted under the push: DVC cannot recreate the folder)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(remote.rglob("*")):
                os.rename(remote, moved)
                try:
                    remote.write_text("unmounted\n")
                except IsADirectoryError:  # the push recreated it first: move that one aside too
                    shutil.copytree(remote, moved, dirs_exist_ok=True)
                    shutil.rmtree(remote)
                    remote.write_text("unmounted\n")
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=pull_the_rug)
    watcher.start()
    first = dvc("push", check=False)
    watcher.join()
    remote.unlink()               # the share is back, with what the interrupted push had written
    os.rename(moved, remote)
    second = dvc("push", check=False)
    status = dvc("status", "--cloud", check=False)
    clone = base / "dvc-clone"
    shutil.rmtree(clone, ignore_errors=True)
    git("clone", "-q", str(repo), str(clone), cwd=base)
    pulled = dvc("pull", "-q", cwd=clone, check=False)
    error = next((line for line in first.stderr.splitlines() if line.startswith("ERROR")), last_line(first.stderr))
    outcome = (f"push with the remote gone: exit {first.returncode} (\"{error[:80]}\"); again with it "
               f"back: exit {second.returncode}; `dvc status --cloud`: {last_line(status.stdout)[:40]}; a clone's "
               f"pull: exit {pulled.returncode}")
    case = Case("the DVC remote disappears in the middle of a push", outcome)
    got = digest(clone)
    wanted = {p: h for p, h in reference.items() if p.split("/")[0] in ("results", "figures", "models")}
    case.lost = sorted(set(wanted) - set(got))
    case.wrong = sorted(p for p in set(wanted) & set(got) if wanted[p] != got[p])
    return case


# ---------------------------------------------------------------------------------------------- the report

def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def report(cases: list[Case], argv: list[str], seconds: float, total: float) -> str:
    lines = [f"Fault injection report: `python benchmarks/faults.py {' '.join(argv)}` at commit {git_commit()}, "
             f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs; the uninterrupted reference run took "
             f"{seconds:.0f} s, the whole report {total / 60:.1f} min.", "",
             "| injected fault | outcome | lost or silently wrong |", "|---|---|---|",
             *(c.row() for c in cases)]
    bad = [c for c in cases if c.run and (c.lost or c.wrong)]
    lines += ["", "Nothing lost, nothing silently wrong." if not bad else
              f"{len(bad)} case(s) lost or changed outputs: see the table."]
    return "\n".join(lines) + "\n"


ALL = ("kill", "preempt", "concurrent", "truncate_json", "truncate_weights", "delete", "full_disk", "workers",
       "dvc_remote")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--kills-per-workspace", type=int, default=5)
    p.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {', '.join(ALL)}")
    p.add_argument("--work", type=Path, default=None, help="where the workspaces go (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--disk-mb", type=int, default=0, help="tmpfs size of the full-disk case (default: half the "
                                                               "reference workspace)")
    p.add_argument("--report", type=Path, default=None)
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    unknown = only - set(ALL)
    if unknown:
        p.error(f"--only: unknown fault(s) {', '.join(sorted(unknown))} (choose from {', '.join(ALL)})")
    base = args.work or Path(tempfile.mkdtemp(prefix="giftlab-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    profile = base / "faults.yaml"
    profile.write_text(yaml.safe_dump(FAULT_PROFILE))
    rng = random.Random(args.seed)
    began = time.monotonic()

    reference_dir = new_workspace(base, "reference")
    t0 = time.monotonic()
    ref = run(reference_dir, profile)
    seconds = time.monotonic() - t0
    if ref.returncode != 0:
        print(ref.stdout[-3000:], ref.stderr[-3000:], sep="\n")
        return 2
    reference = digest(reference_dir)
    print(f"reference: {len(reference)} outputs in {seconds:.0f} s", file=sys.stderr)

    cases: list[Case] = []

    def say(make, fault: str) -> None:
        """Run one case; a case that crashes is a row of the report (and a failure), not the end of it."""
        try:
            made = make()
        except Exception as exc:  # noqa: BLE001 - the report names it
            made = Case(fault, f"the case itself failed: {type(exc).__name__}: {exc}"[:300], wrong=["(case failed)"])
        for case in made if isinstance(made, list) else [made]:
            cases.append(case)
            print(case.row(), file=sys.stderr, flush=True)

    if "kill" in only:
        say(lambda: case_kills(base, profile, reference, seconds, args.kills, args.kills_per_workspace, rng), "kill")
    if "preempt" in only:
        for rule, run_id in (("sft", "qwen/gift-b3"), ("grpo", "qwen/gift-b3")):
            say(lambda: case_preempt(base, profile, reference, rule, run_id), "preempt")
    if "concurrent" in only:
        say(lambda: case_concurrent(base, profile, reference), "concurrent")
    if "truncate_json" in only:
        def torn_summary(work):
            path = "results/eval/rl/qwen/gift-b3/tiny_id.summary.json"
            truncate(work / path)
            return path
        say(lambda: case_damage(base, profile, reference, reference_dir, "torn_json", "a result JSON cut in half "
                                "(an evaluation summary)", torn_summary), "truncate_json")
    if "truncate_weights" in only:
        def torn_weights(work):
            truncate(work / "models/rl/qwen/sft/model.safetensors", 0.9)
            return "models/rl/qwen/sft"
        say(lambda: case_damage(base, profile, reference, reference_dir, "torn_weights", "a checkpoint cut short "
                                "(the last 10% of a policy's model.safetensors)", torn_weights), "truncate_weights")
    if "delete" in only:
        def deleted(work):
            (work / "results/consistency/qwen/sft/sft_rl.json").unlink()
            (work / "figures/fig2.png").unlink()
            return "results/consistency/qwen/sft/sft_rl.json"
        say(lambda: case_damage(base, profile, reference, reference_dir, "deleted", "outputs deleted (a consistency "
                                "result and Figure 2's PNG)", deleted), "delete")
    if "full_disk" in only:
        size = args.disk_mb or max(2, int(0.5 * sum(f.stat().st_size for f in reference_dir.rglob("*")
                                                    if f.is_file()) / 2**20))
        say(lambda: case_full_disk(base, profile, reference, size), "full_disk")
    if "workers" in only:
        say(case_grading_workers, "workers")
    if "dvc_remote" in only:
        say(lambda: case_dvc_remote(base, reference_dir, reference), "dvc_remote")

    text = report(cases, argv, seconds, time.monotonic() - began)
    print(text)
    if args.report:
        args.report.write_text(text)
    if args.work is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if all(not (c.lost or c.wrong) for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
