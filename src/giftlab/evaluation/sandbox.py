"""Run untrusted Python (model-written code + a benchmark's tests) in a contained child process.

Never in the evaluator's own process. One run = one fresh child:

* **process**: ``python -I -B _sandbox_boot.py`` (:mod:`giftlab.evaluation._sandbox_boot`, a script)
  in a new session (own process group), cwd = a fresh temporary directory, a minimal environment
  (``HOME``/``TMPDIR`` = that directory, no tokens, BLAS/OpenMP pinned to one thread); stdout/stderr go to files (bounded by ``RLIMIT_FSIZE``), so
  a flood of output can neither fill memory nor dead-lock a pipe;
* **resource limits** (set by the boot code in the child before any untrusted code runs, soft =
  hard so they cannot be raised again): ``RLIMIT_CPU`` (SIGXCPU, then SIGKILL one second later),
  ``RLIMIT_AS`` (memory), ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_CORE`` = 0 and
  ``RLIMIT_NPROC`` (tasks of this user now + a margin; Linux does not enforce it for root);
* **wall clock**: the parent waits ``timeout`` seconds and then SIGKILLs the whole process group
  (no signal the child can catch or ignore is involved, so overriding ``SIGALRM``/``SIGXCPU``
  does not help it);
* **Linux kernel guards where available** (probed once, used automatically, recorded in
  :func:`capabilities`):

  - ``unshare --net`` (``--map-root-user`` when not root): an empty network namespace, no
    interface but a down loopback -- no TCP, UDP or local connection to the host;
  - seccomp: ``fork``/``vfork`` and ``clone`` without ``CLONE_THREAD`` fail with EPERM
    (``clone3`` with ENOSYS, so libc falls back to ``clone``): no child processes at all, so a
    fork bomb is dead on arrival and nothing can escape the process group; threads still work;
    ``chmod``/``chown``/``utime``/xattr calls fail with EPERM (anywhere, the work directory included);
  - Landlock (ABI >= 1): no file may be created, written, truncated, renamed or removed outside
    the temporary directory (``/dev/null`` stays writable); ABI >= 4 also denies TCP
    bind/connect; ABI >= 6 also denies signals to processes outside the sandbox and abstract
    unix sockets;

* **Python guards** (defence in depth, bypassable with ``ctypes``): ``socket`` creation raises,
  ``os.kill``/``os.killpg``/``os.fork``/``subprocess`` raise.

A program passes only if the boot code reaches the end of the test code and prints a per-run
random token that it reads from a pipe *after* the tests finished (``os._exit(0)``,
``sys.exit(0)``, a closed stdout or a killed child therefore all score as failures).

Limitations (documented, not hidden): without seccomp/Landlock/``unshare`` (non-Linux, old
kernels, containers that forbid them) the guards fall back to rlimits + Python monkeypatches,
which a deliberate program can bypass with ``ctypes``; as root without seccomp a fork bomb is
only bounded by the wall clock; reads are never restricted (the program can read any file the
evaluator can); a program can find the token if it reads the pipe before the boot does.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache

from giftlab.rewards.extract import answer_part

__all__ = ["SandboxResult", "run_program", "extract_code", "capabilities", "DEFAULT_LIMITS"]

#: Defaults; the pipeline pins them through ``eval.code_timeout`` / ``eval.code_memory_mb``.
DEFAULT_LIMITS = dict(timeout=10.0, memory_mb=2048, fsize_mb=64, nproc_margin=64, nofile=256)
_TAIL = 4000  # characters of stdout/stderr kept in a result


@dataclass
class SandboxResult:
    passed: bool             # tests finished and the token was printed, exit status 0
    status: str              # passed | failed | timeout | killed | error
    returncode: int | None
    seconds: float
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    guards: dict = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.passed


# --------------------------------------------------------------------------- the child side
# The child runs ``python -I -B _sandbox_boot.py <config.json> <token_fd>`` (a script next to this module,
# self-contained: it imports nothing from giftlab). Every guard is applied before the untrusted source runs.
_BOOT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_boot.py")


# --------------------------------------------------------------------------- the parent side

_SECCOMP_ARCH = {
    # machine: (AUDIT_ARCH, blocked syscalls (fork, vfork; then the chmod/chown/utime/xattr family:
    # Landlock does not cover metadata, so without this a program could chmod, chown or re-date any file the
    # evaluator can, e.g. outputs whose mtimes Snakemake trusts), clone, clone3)
    "x86_64": (0xC000003E, (57, 58, 90, 91, 92, 93, 94, 132, 188, 189, 190, 197, 198, 199, 235, 260, 261,
                            268, 280, 452, 463, 466), 56, 435),
    "aarch64": (0xC00000B7, (5, 6, 7, 14, 15, 16, 52, 53, 54, 55, 88, 452, 463, 466), 220, 435),
}


@lru_cache(maxsize=None)
def _unshare_prefix() -> tuple[str, ...]:
    """``unshare`` arguments that give an empty network namespace here, or () when impossible."""
    exe = shutil.which("unshare")
    if not exe or sys.platform != "linux":
        return ()
    candidates = [(exe, "--net")] if os.geteuid() == 0 else []
    candidates.append((exe, "--map-root-user", "--net"))
    for prefix in candidates:
        try:
            r = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if r.returncode == 0:
            return prefix
    return ()


@lru_cache(maxsize=None)
def capabilities() -> dict:
    """Which kernel guards this machine offers (probed once per process)."""
    landlock_abi = 0
    if sys.platform == "linux":
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            landlock_abi = max(0, int(libc.syscall(444, None, ctypes.c_size_t(0),
                                                   ctypes.c_uint32(1))))
        except Exception:
            landlock_abi = 0
    return {
        "platform": sys.platform,
        "machine": platform.machine(),
        "unshare_net": bool(_unshare_prefix()),
        "landlock_abi": landlock_abi,
        "seccomp": sys.platform == "linux" and platform.machine() in _SECCOMP_ARCH,
        "root": hasattr(os, "geteuid") and os.geteuid() == 0,
    }


def _user_tasks() -> int:
    """Tasks (threads included) of this real uid -- RLIMIT_NPROC counts them all."""
    uid, total = os.getuid(), 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                text = fh.read()
        except OSError:
            continue
        m = re.search(r"^Uid:\s+(\d+)", text, re.M)
        t = re.search(r"^Threads:\s+(\d+)", text, re.M)
        if m and int(m.group(1)) == uid:
            total += int(t.group(1)) if t else 1
    return total


def _tail(path: str, limit: int = _TAIL) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4 * limit))
            return fh.read().decode("utf-8", "replace")[-limit:]
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    try:
        proc.kill()
    except OSError:
        pass


def run_program(source: str, timeout: float = DEFAULT_LIMITS["timeout"],
                memory_mb: int | None = DEFAULT_LIMITS["memory_mb"],
                cpu_seconds: float | None = None,
                fsize_mb: int | None = DEFAULT_LIMITS["fsize_mb"],
                nproc_margin: int | None = DEFAULT_LIMITS["nproc_margin"],
                nofile: int | None = DEFAULT_LIMITS["nofile"],
                network: bool = False, kernel_guards: bool = True,
                python: str | None = None, stdout_chars: int = _TAIL) -> SandboxResult:
    """Run Python ``source`` in a sandboxed child; never raises for anything the program does.

    ``timeout``: wall-clock seconds (the whole process group is SIGKILLed after it);
    ``cpu_seconds``: RLIMIT_CPU (default: ``ceil(timeout)``); ``memory_mb``: RLIMIT_AS;
    ``fsize_mb``: RLIMIT_FSIZE; ``nproc_margin``: RLIMIT_NPROC = this user's tasks now + margin;
    ``network=False``: an empty network namespace when ``unshare`` works (plus Landlock TCP
    denial and a socket monkeypatch); ``kernel_guards=False`` skips seccomp and Landlock
    (tests of the fallback path); ``stdout_chars``: how much of the end of stdout the result keeps
    (stderr keeps the default tail).
    """
    caps = capabilities()
    base = tempfile.mkdtemp(prefix="giftlab-sandbox-")
    workdir = os.path.join(base, "work")
    os.mkdir(workdir, 0o700)
    program = os.path.join(base, "program.py")
    cfg_path = os.path.join(base, "config.json")
    out_path, err_path = os.path.join(base, "stdout"), os.path.join(base, "stderr")
    cpu = int(cpu_seconds) if cpu_seconds is not None else max(1, int(-(-float(timeout) // 1)))
    nproc = None
    if nproc_margin is not None and sys.platform == "linux" and os.getuid() != 0:
        nproc = _user_tasks() + int(nproc_margin)
    machine = platform.machine()
    cfg = {
        "workdir": workdir, "program": program, "cpu_seconds": cpu,
        "memory_bytes": None if memory_mb is None else int(memory_mb) << 20,
        "fsize_bytes": None if fsize_mb is None else int(fsize_mb) << 20,
        "nofile": nofile, "nproc": nproc,
        "landlock": kernel_guards and caps["landlock_abi"] > 0,
        "seccomp": kernel_guards and caps["seccomp"],
        "seccomp_arch": _SECCOMP_ARCH.get(machine),
    }
    with open(program, "w") as fh:
        fh.write(source if isinstance(source, str) else str(source))
    with open(cfg_path, "w") as fh:
        json.dump(cfg, fh)
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}
    prefix = () if network else _unshare_prefix()
    token = secrets.token_hex(16).encode()
    r_fd, w_fd = os.pipe()
    t0 = time.monotonic()
    proc = None
    try:
        os.write(w_fd, token)
        os.close(w_fd)
        w_fd = None
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            cmd = [*prefix, python or sys.executable, "-I", "-B", _BOOT_PATH, cfg_path, str(r_fd)]
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, pass_fds=(r_fd,),
                                    start_new_session=True, close_fds=True)
        os.close(r_fd)
        r_fd = None
        timed_out = False
        try:
            rc = proc.wait(timeout=float(timeout))
        except subprocess.TimeoutExpired:
            timed_out = True
            rc = None
        _kill_group(proc)  # also reaps anything the program left behind in its group
        if timed_out:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        seconds = time.monotonic() - t0
        stdout, stderr = _tail(out_path, max(_TAIL, int(stdout_chars))), _tail(err_path)
        guards = {"unshare_net": bool(prefix)}
        m = re.search(r"^GIFTLAB_GUARDS (\{.*\})$", stderr, re.M)
        if m:
            try:
                guards.update(json.loads(m.group(1)))
            except ValueError:
                pass
            stderr = stderr[:m.start()] + stderr[m.end() + 1:]
        passed = (not timed_out and rc == 0
                  and stdout.rstrip("\n").endswith("\n" + token.decode()))
        if passed:
            stdout = stdout.rstrip("\n")[:-len(token)].rstrip("\n")
            status = "passed"
        elif timed_out:
            status = "timeout"
        elif rc is not None and rc < 0:
            status = "killed"
            # RLIMIT_CPU delivers SIGXCPU then SIGKILL: a CPU-time overrun is a timeout
            if -rc in (signal.SIGXCPU, signal.SIGKILL) and seconds >= cpu * 0.9:
                timed_out, status = True, "timeout"
        else:
            status = "failed"
        return SandboxResult(passed, status, rc, seconds, timed_out, stdout, stderr, guards)
    except Exception as exc:  # the evaluator's side failed (e.g. no fork possible): score 0
        if proc is not None:
            _kill_group(proc)
        return SandboxResult(False, "error", None, time.monotonic() - t0, False, "",
                             f"{type(exc).__name__}: {exc}", {})
    finally:
        for fd in (r_fd, w_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- code extraction

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PY_TAGS = {"python", "py", "python3", "py3", ""}


def extract_code(response: str | None, entry_point: str | None = None,
                 max_chars: int = 50_000) -> str | None:
    """The program in a model response.

    Only the text after the last ``</think>`` counts. Among the fenced blocks (an unterminated
    last block, e.g. a truncated response, counts too) the last python-tagged (or untagged)
    block that defines ``entry_point`` wins, else the last python block, else the last block of
    any language. No fence: the whole text when it looks like Python (``def``/``import``),
    otherwise None.
    """
    if not response:
        return None
    text = answer_part(response, max_chars)
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]
    blocks = [(tag, body) for tag, body in blocks if body.strip()]
    if blocks:
        py = [body for tag, body in blocks if tag in _PY_TAGS]
        if entry_point:
            pat = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.M)
            defining = [b for b in py if pat.search(b)]
            if defining:
                return defining[-1].rstrip() + "\n"
        chosen = py[-1] if py else blocks[-1][1]
        return chosen.rstrip() + "\n"
    if re.search(r"^\s*(def|class|import|from)\s", text, re.M):
        return text.strip() + "\n"
    return None
