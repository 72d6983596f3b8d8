"""One run per workspace: an OS lock that needs no cleanup, and DVC's own lock respected.

Snakemake's own directory lock is off in the default profile (``nolock``): a ``kill -9`` would leave it behind,
to be cleared by hand. Instead the workflow's ``onstart`` (``workflow/rules/common.smk``: only when jobs are about
to run, in the main Snakemake process) calls :func:`hold_workspace_lock`, an ``fcntl.flock`` on
``.snakemake/giftlab.lock`` that the kernel releases when the process ends, however it ends. A second run in the
same workspace stops before its first job with one line naming the holder's PID and command. Outside a DVC stage
it also stops while DVC holds its repository lock (``.dvc/tmp/lock``, taken by ``dvc repro`` between and during
its stages); the ``snakemake`` a DVC stage runs (``DVC_STAGE`` set) is DVC's own and goes ahead.

Under the SLURM executor the lock dies with the process, but the jobs it submitted do not: a Snakemake killed
without cancelling them (kill -9, the OOM killer, a login-node reboot) leaves them queued or running, and the next
run, with a new run id, knows nothing of them and submits each again, a second trainer in the same ``work/`` folder.
Such a run stops in one line naming them (:func:`earlier_slurm_jobs`).
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

from giftlab.cli import JobFailed

LOCK_FILE = Path(".snakemake") / "giftlab.lock"
DVC_LOCK_FILE = Path(".dvc") / "tmp" / "lock"

_held: list[IO[str]] = []  # open for the life of the process: closing the file would release the lock


class WorkspaceBusy(RuntimeError):
    """Another run holds the workspace; the message is one line naming it."""


#: what flock() answers on a filesystem that has none (Lustre mounted without ``flock``: ENOSYS; NFS without a
#: lock daemon: ENOLCK; others: EOPNOTSUPP / EINVAL)
NO_FLOCK = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


def _try_flock(fh: IO[str]) -> bool | None:
    """True: locked; False: another process holds it; None: this filesystem cannot lock."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in NO_FLOCK:
            return None
        raise


def _holder(path: Path) -> str:
    try:
        text = " ".join(path.read_text(errors="replace").split())
    except OSError:
        text = ""
    return text[:300] or "a process that wrote nothing"


def dvc_is_running(root: Path) -> str | None:
    """Who holds DVC's repository lock in ``root`` (zc.lockfile, an flock like ours), or None if nobody does."""
    path = root / DVC_LOCK_FILE
    if not path.exists():
        return None
    with open(path, "a+") as fh:
        locked = _try_flock(fh)
        if locked is None:  # no flock here: DVC itself needs core.hardlink_lock on such a filesystem
            return None
        if locked:
            fcntl.flock(fh, fcntl.LOCK_UN)  # only looked: DVC takes it again whenever it needs it
            return None
    return f"DVC (pid {_holder(path)})"


def earlier_slurm_jobs(root: str | Path) -> list[str]:
    """This user's SLURM jobs still queued or running in ``root`` that a Snakemake submitted (the SLURM executor's
    ``--comment rule_<rule>...``), as ``<job id> (<comment>)``; none where ``squeue`` is missing or does not answer
    (said on stderr: the run goes ahead unchecked, as every run did before this check)."""
    try:
        out = subprocess.run(["squeue", "--noheader", "-u", getpass.getuser(), "--format=%i|%Z|%k"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"giftlab: could not list this user's SLURM jobs ({type(exc).__name__}); if an earlier run of this "
              "workspace left jobs running, `scancel` them before this run submits them again", file=sys.stderr)
        return []
    jobs, here = [], Path(root).resolve()
    for line in out.splitlines():
        job, _, rest = line.partition("|")
        workdir, _, comment = rest.partition("|")
        if comment.strip().startswith(("rule_", "group_")) and Path(workdir.strip()).resolve() == here:
            jobs.append(f"{job.strip()} ({comment.strip()})")
    return jobs


def hold_workspace_lock(root: str | Path, command: str, slurm: bool = False) -> Path:
    """Take the workspace lock of ``root`` for this process (released when the process ends, kill -9 included)
    and record our PID and ``command`` in it; return its path. :class:`WorkspaceBusy` if another run holds it or,
    outside a DVC stage, DVC is running in ``root``, or (``slurm``: a run under the SLURM executor) an earlier run's
    SLURM jobs are still queued or running here."""
    root = Path(root)
    path = root / LOCK_FILE
    if "DVC_STAGE" not in os.environ:
        dvc = dvc_is_running(root)
        if dvc:
            raise WorkspaceBusy(f"giftlab: {dvc} is running in {root}: wait for it to finish (or stop it) "
                                "before running Snakemake here")
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    locked = _try_flock(fh)
    if locked is None:
        print(f"giftlab: this filesystem cannot flock() {path}: running without the workspace lock (start no "
              f"second run in this workspace while this one runs)", file=sys.stderr)
    elif not locked:
        holder = _holder(path)
        fh.close()
        raise WorkspaceBusy(f"giftlab: another run holds this workspace ({holder}): wait for it to finish or stop "
                            f"it; its lock ({path}) goes away with its process, nothing to clean up")
    jobs = earlier_slurm_jobs(root) if slurm else []
    if jobs:
        fh.close()
        more = f" and {len(jobs) - 3} more" if len(jobs) > 3 else ""
        raise WorkspaceBusy(f"giftlab: SLURM jobs of an earlier run of this workspace are still queued or running "
                            f"({', '.join(jobs[:3])}{more}; `squeue --me`): this run would submit them again, a "
                            "second job in each of their work/ folders. Wait for them to end or `scancel` them, then "
                            "run again")
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}: {command}\n")
    fh.flush()
    _held.append(fh)
    return path


class WorkDirBusy(JobFailed):
    """Another job trains in a work folder; the message is one line naming it (``giftlab.cli.run`` prints it)."""


_work_dirs: dict[Path, IO[str]] = {}


def hold_work_dir_lock(work_dir: str | Path, command: str) -> None:
    """One job per training work folder (``work/<rule>/...``), for the life of this process: an ``fcntl.flock`` on
    ``.<folder>.lock`` beside it (outside it: a wiped folder keeps its lock). The workspace lock dies with a
    Snakemake process killed with -9, and its local jobs keep running; the next run would start each of them again
    in the same folder, two trainers writing one checkpoint. :class:`WorkDirBusy` names the holder. Taken again by
    the process that holds it (a test resuming in-process), it is kept."""
    work_dir = Path(work_dir).resolve()
    if work_dir in _work_dirs:
        return
    path = work_dir.parent / f".{work_dir.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    locked = _try_flock(fh)
    if locked is False:
        holder = _holder(path)
        fh.close()
        raise WorkDirBusy(f"{work_dir}: another job is training here ({holder}), a leftover of a Snakemake run "
                          "killed before its jobs (kill -9)? Wait for it to end or stop it, then run again")
    if locked:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}: {command}\n")
        fh.flush()
    _work_dirs[work_dir] = fh
