"""Atomic file and directory output: a killed job never leaves something that looks complete."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write JSON to ``path`` through a temporary sibling file and an atomic rename."""
    return write_text_atomic(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


def current_umask() -> int:
    """The process's umask (Linux: read from /proc, so no thread ever sees it changed; elsewhere set and restored)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary sibling file and an atomic rename.

    The file gets the mode a plain ``open`` would give it (0666 less the umask), not the temporary file's 0600, so
    collaborators sharing the filesystem (or a DVC cache with ``cache.shared group``) can read it.
    """
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path to write; it replaces ``path`` (mode as :func:`write_text_atomic` gives) only
    if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_entry(path)


def remove_stale_temps(*paths: str | os.PathLike) -> list[Path]:
    """Delete the temporaries :func:`atomic_file` left beside each of ``paths`` (``.<name>.<8 random>.tmp``) when a job
    writing it was killed: SIGKILL, or SIGTERM with no handler, skips the cleanup, and each killed attempt leaves one
    (an evaluation's samples at paper scale: MMLU-Pro's 48k answers, about a GB). Call it where the job that owns
    the paths starts: Snakemake runs one job per output at a time and ``giftlab.lock`` one run per workspace, so
    none of them is a live writer's. Logs and returns what it deleted."""
    removed = []
    for path in map(Path, paths):
        own = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")  # mkstemp's 8 characters, this name only
        if path.parent.is_dir():
            for stale in path.parent.iterdir():
                if own.fullmatch(stale.name) and stale.is_file():
                    stale.unlink(missing_ok=True)
                    log.info("removed %s: a killed attempt's temporary", stale)
                    removed.append(stale)
    return removed


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        # inside the try: NFS and Lustre report a failed write (quota, full disk) at fsync, and the staged copy goes
        for entry in sorted(tmp.rglob("*"), reverse=True):  # a folder's files before the folder
            if not entry.is_symlink() and (entry.is_file() or entry.is_dir()):
                fsync(entry)
        fsync(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    _sync_entry(path)


def _sync_entry(path: Path) -> None:
    """Sync the folder that holds ``path``'s new name, best effort: the output is in place by now, and a folder this
    process may write but not read (EACCES at open) must not fail a finished job."""
    try:
        fsync(path.parent)
    except OSError as exc:
        log.warning("%s: written, but its folder's entry could not be synced to disk (%s)", path, exc)


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's data, or a folder's entries, to disk. The atomic writers call it before and after the rename:
    without it a crash of the node (not of the job) soon after a rename can leave the new name on a file whose data
    never reached the disk, an empty output that looks complete (ext4's delayed allocation; NFS and Lustre alike)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot sync a folder (EINVAL); its files are synced all the same
        if not (os.path.isdir(path) and exc.errno in (errno.EINVAL, errno.ENOTSUP, errno.EBADF)):
            raise
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing input file: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _json_default(obj: Any) -> Any:
    # numpy / torch scalars and paths show up in metrics; serialise them plainly.
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def workspace_path(path: str | os.PathLike) -> Path:
    """``path`` relative to the working directory when it lies inside it (the code of the README's clone, which is
    the workspace), else absolute (``snakemake -s <repo>/Snakefile -d <elsewhere>``). Rule params built from it stay
    the same when a workspace is moved or copied whole, so Snakemake reruns nothing; absolute ones all changed."""
    try:
        return Path(path).relative_to(Path.cwd())
    except ValueError:
        return Path(path)
