"""A rule's shell outlives its command's checkpoint on SIGTERM (giftlab.resources.JOB_SHELL_PREFIX).

SLURM signals every process of a job step at once (`--signal=TERM@...` before the time limit, preemption): the
Snakemake process that runs the rule, the rule's bash and the trainer. Emulated here without SLURM: Snakemake runs a
rule whose command saves for 3 s on SIGTERM and exits 75, and SIGTERM goes to Snakemake and all its descendants.
With the Snakefile's prefix bash waits, so Snakemake (and under SLURM the step, then the job) ends after the save.
With Snakemake's default prefix bash dies at once and Snakemake exits while the save still runs: on a cluster with
proctrack/cgroup the job's end kills it (tests_integration/test_slurm.py checks the same on the SLURM test cluster).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from giftlab.resources import JOB_SHELL_PREFIX
from helpers import REPO, venv_env

pytestmark = pytest.mark.slow  # two real Snakemake runs

SAVER = """\
import os, pathlib, signal, sys, time
def saved(signum, frame):
    time.sleep(3)  # the checkpoint's save
    pathlib.Path("saved.txt").write_text(f"{os.getppid()} {time.time()}")
    sys.exit(75)
signal.signal(signal.SIGTERM, saved)
pathlib.Path("started.txt").write_text(str(os.getppid()))
time.sleep(120)
"""

SNAKEFILE = """\
shell.prefix({prefix!r})

rule train:
    output: "done.txt"
    log: "train.log"
    benchmark: "train.tsv"
    shell: "GIFTLAB_THREADS=1 {python} saver.py > {{log}} 2>&1"
"""


def signal_the_step(tmp_path: Path, prefix: str) -> tuple[int, float, int, float, str]:
    """Run the rule, SIGTERM Snakemake and every process under it at once, as slurmstepd signals a step. Returns
    the rule shell's pid, when the save ended, the saver's parent then, when Snakemake ended, and its output."""
    (tmp_path / "saver.py").write_text(SAVER)
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(prefix=prefix, python=sys.executable))
    proc = subprocess.Popen([str(Path(sys.executable).parent / "snakemake"), "--cores", "1", "--nolock"],
                            cwd=tmp_path, env=venv_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "started.txt").exists():
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
            time.sleep(0.2)
        time.sleep(0.5)  # the handler is set before started.txt is written
        shell_pid = int((tmp_path / "started.txt").read_text())
        for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
            p.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
        ended = time.time()
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.time() + 30
    while not (tmp_path / "saved.txt").exists() and time.time() < deadline:  # an orphaned save ends later
        time.sleep(0.2)
    ppid, saved_at = (tmp_path / "saved.txt").read_text().split()
    return shell_pid, float(saved_at), int(ppid), ended, out


def test_the_snakefile_prefixes_every_rule_with_the_job_shell_prefix():
    assert "shell.prefix(JOB_SHELL_PREFIX)" in (REPO / "Snakefile").read_text()
    assert JOB_SHELL_PREFIX.startswith("set -euo pipefail; ")  # Snakemake's own prefix for bash, kept


def test_a_signalled_step_ends_after_its_commands_save(tmp_path):
    shell_pid, saved_at, ppid, ended, out = signal_the_step(tmp_path, JOB_SHELL_PREFIX)
    assert ppid == shell_pid, out[-3000:]       # the rule's bash was still there when the save ended
    assert ended >= saved_at, out[-3000:]       # Snakemake (the step) ended after the save, not before
    assert "exit status 75" in out and not (tmp_path / "done.txt").exists()   # a failed try: the retry resumes


def test_without_the_trap_the_step_ends_while_the_save_runs(tmp_path):
    """The fault the prefix fixes (Snakemake's default prefix): bash dies on SIGTERM, Snakemake fails the job and
    exits at once, and the save goes on orphaned, outside the job that SLURM has already ended."""
    shell_pid, saved_at, ppid, ended, out = signal_the_step(tmp_path, "set -euo pipefail; ")
    assert ppid != shell_pid and ended < saved_at, out[-3000:]
