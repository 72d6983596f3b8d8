"""One run per workspace: the OS lock (giftlab.lock) refuses a second run in one line naming the first, needs no
cleanup after a kill -9, respects DVC's lock outside DVC stages, and stops a real `snakemake` before its first job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from giftlab.lock import LOCK_FILE, hold_workspace_lock
from helpers import REPO, snakemake, write_override

pytestmark = pytest.mark.slow  # scheduled early on the two workers (tests/conftest.py)

HOLD = """
import sys, time
from giftlab.lock import hold_workspace_lock
hold_workspace_lock(sys.argv[1], "snakemake --cores 2 all (a test holder)")
print("held", flush=True)
time.sleep(600)
"""

DVC_HOLD = """
import sys, time, zc.lockfile
lock = zc.lockfile.LockFile(sys.argv[1])   # what DVC's repo lock is (dvc/lock.py)
print("held", flush=True)
time.sleep(600)
"""


def _holder(code: str, arg: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code, str(arg)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _in_subprocess(root: Path, env=None) -> subprocess.CompletedProcess:
    """hold_workspace_lock in a fresh process (a lock this test process took would be its own to take again)."""
    code = ("import sys\nfrom giftlab.lock import hold_workspace_lock, WorkspaceBusy\n"
            "try:\n    hold_workspace_lock(sys.argv[1], 'second')\nexcept WorkspaceBusy as e:\n"
            "    sys.exit(str(e))\nprint('acquired')")
    return subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60,
                          env=env)


def test_a_second_run_is_refused_in_one_line_and_a_killed_holder_needs_no_cleanup(tmp_path):
    holder = _holder(HOLD, tmp_path)
    try:
        second = _in_subprocess(tmp_path)
        assert second.returncode != 0
        message = second.stderr.strip()
        assert "\n" not in message and f"pid {holder.pid}: snakemake --cores 2 all" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_FILE).exists()  # the file stays; the lock went with the process
    again = _in_subprocess(tmp_path)
    assert again.returncode == 0 and again.stdout.strip() == "acquired"


def test_the_holder_is_this_process_for_its_whole_life(tmp_path):
    path = hold_workspace_lock(tmp_path, "pytest")
    assert path.read_text().strip() == f"pid {os.getpid()}: pytest"
    assert _in_subprocess(tmp_path).returncode != 0


def test_dvc_running_here_is_respected_except_by_its_own_stages(tmp_path):
    lock = tmp_path / ".dvc" / "tmp" / "lock"
    lock.parent.mkdir(parents=True)
    holder = _holder(DVC_HOLD, lock)
    try:
        refused = _in_subprocess(tmp_path)
        assert refused.returncode != 0 and f"DVC (pid {holder.pid})" in refused.stderr
        stage = _in_subprocess(tmp_path, env={**os.environ, "DVC_STAGE": "sft"})  # the snakemake a stage runs
        assert stage.returncode == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _in_subprocess(tmp_path).returncode == 0  # DVC gone: no stale lock in the way


@pytest.mark.parametrize("code", ["ENOSYS", "ENOLCK", "EOPNOTSUPP"])
def test_a_shared_filesystem_without_flock_runs_without_the_lock_in_one_line(tmp_path, monkeypatch, capsys, code):
    """The workspace lives on the cluster's shared filesystem, where flock() may not exist: Lustre mounted without
    `flock` answers ENOSYS, NFS without a lock daemon ENOLCK. That raised an OSError from onstart, so no run could
    start at all; the run goes ahead without the lock, saying so in one line (DVC's lock likewise unreadable)."""
    import errno

    from giftlab import lock

    def no_flock(fh, op):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(lock.fcntl, "flock", no_flock)
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    (tmp_path / ".dvc" / "tmp" / "lock").write_text("")
    path = hold_workspace_lock(tmp_path, "snakemake all")
    assert path == tmp_path / LOCK_FILE and path.read_text().strip() == f"pid {os.getpid()}: snakemake all"
    warning = capsys.readouterr().err.strip()
    assert "\n" not in warning and "without the workspace lock" in warning and str(path) in warning


def test_snakemake_stops_before_its_first_job_while_another_run_holds_the_workspace(tmp_path):
    smoke = write_override(tmp_path / "smoke.yaml", {})
    configs = [REPO / "config" / "smoke.yaml", smoke]
    target = "data/tiny/problems.jsonl"
    holder = _holder(HOLD, tmp_path)
    try:
        blocked = snakemake(tmp_path, "--cores", "2", target, configfiles=configs, timeout=300)
        assert blocked.returncode != 0
        last = [line for line in (blocked.stdout + blocked.stderr).splitlines() if line.strip()][-1]
        assert last.startswith("giftlab: another run holds this workspace") and f"pid {holder.pid}" in last
        assert not (tmp_path / target).exists()
        # a dry run only reads: it is not refused
        assert snakemake(tmp_path, "-n", "--cores", "2", target, configfiles=configs, timeout=300).returncode == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _in_subprocess(tmp_path).returncode == 0  # the next run goes ahead: nothing was left behind


SQUEUE = """#!/bin/sh
# a fake squeue: this user's jobs as `--format=%i|%Z|%k` prints them
cat <<'JOBS'
160|{work}|rule_sft_wildcards_qwen_gift-b10
161|{work}|rule_grpo_wildcards_llama_sft
162|{other}|rule_sft_wildcards_qwen_sft
163|{work}|an interactive shell
JOBS
"""


def test_a_slurm_run_stops_while_an_earlier_runs_jobs_are_still_queued_here(tmp_path):
    """A Snakemake killed without cancelling its SLURM jobs (kill -9, a login-node reboot) leaves them running; the
    workspace lock went with it, and the next run (a new SLURM run id, no record of them) submitted each again: two
    8-GPU trainers in one work/ folder (shown on the test cluster: a second job for the same output while the first
    ran). It stops in one line naming them; jobs elsewhere or not Snakemake's do not count, nor without SLURM."""
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(SQUEUE.format(work=work, other=tmp_path / "other"))
    (bin_dir / "squeue").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    code = ("import sys\nfrom giftlab.lock import hold_workspace_lock, WorkspaceBusy\n"
            "try:\n    hold_workspace_lock(sys.argv[1], 'snakemake', slurm=True)\nexcept WorkspaceBusy as e:\n"
            "    sys.exit(str(e))\nprint('acquired')")
    refused = subprocess.run([sys.executable, "-c", code, str(work)], capture_output=True, text=True, env=env,
                             timeout=60)
    message = refused.stderr.strip()
    assert refused.returncode != 0 and "\n" not in message
    assert "160 (rule_sft_wildcards_qwen_gift-b10), 161 (rule_grpo_wildcards_llama_sft)" in message
    assert "162" not in message and "163" not in message and "scancel" in message
    assert _in_subprocess(work, env=env).returncode == 0  # refused, it held nothing; a local run is not asked
    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 1\n")  # no controller: nothing known, the run goes ahead
    unchecked = subprocess.run([sys.executable, "-c", code, str(work)], capture_output=True, text=True, env=env,
                               timeout=60)
    assert unchecked.stdout.strip() == "acquired" and "could not list this user's SLURM jobs" in unchecked.stderr


def test_one_job_per_training_work_folder(tmp_path):
    """A Snakemake process killed with -9 leaves its local jobs running; the next run started each again in the same
    work/ folder (the fault-injection review). A training job holds its folder's lock while it runs: a second one
    stops in one line naming the first; the process holding it may take it again (a resume in-process)."""
    import subprocess
    import sys

    from giftlab.lock import WorkDirBusy, hold_work_dir_lock

    work = tmp_path / "work" / "sft" / "qwen" / "sft"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from giftlab.lock import hold_work_dir_lock\n"
                               f"hold_work_dir_lock({str(work)!r}, 'scripts/sft.py --config ...')\n"
                               "print('held', flush=True)\ntime.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkDirBusy, match=rf"^{work}: another job is training here \(pid {holder.pid}: "
                                              r"scripts/sft.py --config \.\.\.\), a leftover"):
            hold_work_dir_lock(work, "second")
    finally:
        holder.kill()
        holder.wait()
    hold_work_dir_lock(work, "after")  # its lock went with its process
    hold_work_dir_lock(work, "again")  # this process holds it: kept
