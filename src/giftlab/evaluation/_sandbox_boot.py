"""The child side of :func:`giftlab.evaluation.sandbox.run_program` (run as a script, never imported).

The sandbox starts ``python -I -B <this file> <config.json> <token_fd>`` in a fresh temporary directory.
``-I`` keeps the environment, the user site and this file's own directory off ``sys.path``, so this file
must stay self-contained: it imports nothing from giftlab (only the standard library). It applies every
guard before the untrusted program runs, in this order:

1. resource limits, soft = hard so they cannot be raised again: ``RLIMIT_CPU`` (soft; SIGKILL one second
   later), ``RLIMIT_AS``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_CORE`` = 0, ``RLIMIT_NPROC``;
2. ``PR_SET_NO_NEW_PRIVS``, then Landlock (no file written outside the work directory; TCP and signals
   outside the sandbox denied where the ABI has them) and seccomp (no ``fork``/``vfork``/non-thread
   ``clone``; ``clone3`` -> ENOSYS), each where the config asks for it and the kernel offers it;
3. Python-level guards (sockets, ``os.kill``/``fork``/``exec*``/``system``, ``subprocess``);
4. the program runs with ``__name__ == "__main__"`` in fresh globals; only if it returns normally does
   this script read the per-run token from its pipe and print it (the parent's proof of completion).

The guards it applied are reported on stderr as one ``GIFTLAB_GUARDS {json}`` line.
"""

import ctypes
import json
import os
import resource
import sys

if __name__ != "__main__":  # importing this file would set rlimits and seccomp on the importer
    raise ImportError("giftlab.evaluation._sandbox_boot is the sandbox's child script; it is not importable")


def _set_limits(cfg: dict) -> dict:
    applied = {}

    def lim(name, value):
        if value is None:
            return
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
            applied[name] = value
        except (ValueError, OSError):
            pass

    cpu = cfg["cpu_seconds"]
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        applied["RLIMIT_CPU"] = cpu
    except (ValueError, OSError):
        pass
    lim("RLIMIT_AS", cfg["memory_bytes"])
    lim("RLIMIT_FSIZE", cfg["fsize_bytes"])
    lim("RLIMIT_NOFILE", cfg["nofile"])
    lim("RLIMIT_CORE", 0)
    lim("RLIMIT_NPROC", cfg["nproc"])
    return applied


def _landlock(libc, no_new_privs: bool, workdir: str) -> int:
    abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1 or not no_new_privs:
        return 0
    fs = 0
    for bit in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12):  # write-ish rights of ABI 1
        fs |= 1 << bit
    if abi >= 2:
        fs |= 1 << 13  # REFER
    if abi >= 3:
        fs |= 1 << 14  # TRUNCATE
    net = 3 if abi >= 4 else 0          # BIND_TCP | CONNECT_TCP, no rule -> all denied
    scoped = 3 if abi >= 6 else 0       # ABSTRACT_UNIX_SOCKET | SIGNAL

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64),
                    ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]

    attr = RulesetAttr(fs, net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    rfd = libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if rfd < 0:
        return 0
    file_rights = (1 << 1) | ((1 << 14) if abi >= 3 else 0)
    for path, rights in ((workdir, fs), ("/dev/null", file_rights)):
        try:
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        rule = PathBeneath(rights, pfd)
        libc.syscall(445, rfd, 1, ctypes.byref(rule), ctypes.c_uint32(0))
        os.close(pfd)
    ok = libc.syscall(446, rfd, ctypes.c_uint32(0)) == 0
    os.close(rfd)
    return abi if ok else 0


def _seccomp(libc, no_new_privs: bool, arch) -> bool:
    if not no_new_privs or arch is None:
        return False
    audit_arch, blocked, clone_nr, clone3_nr = arch
    ALLOW, KILL = 0x7FFF0000, 0x80000000
    EPERM, ENOSYS = 0x00050000 | 1, 0x00050000 | 38

    class F(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    LD, JEQ, JSET, JGE, RET = 0x20, 0x15, 0x45, 0x35, 0x06
    prog = [F(LD, 0, 0, 4), F(JEQ, 1, 0, audit_arch), F(RET, 0, 0, KILL), F(LD, 0, 0, 0)]
    if audit_arch == 0xC000003E:  # x86_64: refuse the x32 syscall range
        prog.append(F(JGE, 0, 1, 0x40000000))
        prog.append(F(RET, 0, 0, EPERM))
    for nr in blocked:
        prog.append(F(JEQ, 0, 1, nr))
        prog.append(F(RET, 0, 0, EPERM))
    prog.append(F(JEQ, 0, 1, clone3_nr))
    prog.append(F(RET, 0, 0, ENOSYS))
    prog.append(F(JEQ, 0, 3, clone_nr))
    prog.append(F(LD, 0, 0, 16))               # args[0] (low 32 bits): clone flags
    prog.append(F(JSET, 1, 0, 0x00010000))     # CLONE_THREAD -> allow
    prog.append(F(RET, 0, 0, EPERM))
    prog.append(F(RET, 0, 0, ALLOW))
    arr = (F * len(prog))(*prog)

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(F))]

    fprog = Prog(len(prog), arr)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                           ctypes.c_ulong]
    return libc.prctl(22, 2, ctypes.cast(ctypes.byref(fprog), ctypes.c_void_p), 0, 0) == 0


def _python_guards() -> None:
    import socket
    import subprocess

    def _deny(*a, **k):
        raise PermissionError("disabled in the sandbox")

    class _NoSocket:
        def __init__(self, *a, **k):
            raise PermissionError("network access is disabled in the sandbox")

    socket.socket = _NoSocket
    for name in ("create_connection", "create_server", "socketpair", "fromfd",
                 "getaddrinfo", "gethostbyname"):
        setattr(socket, name, _deny)
    for name in ("kill", "killpg", "fork", "forkpty", "system", "popen", "execv", "execve",
                 "execvp", "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv",
                 "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp",
                 "setuid", "setgid", "chroot", "chmod", "fchmod", "lchmod", "chown", "fchown", "lchown",
                 "utime", "setxattr", "removexattr"):
        if hasattr(os, name):
            setattr(os, name, _deny)
    subprocess.Popen = _NoSocket
    for name in ("run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
        setattr(subprocess, name, _deny)


def main() -> None:
    import builtins

    with open(sys.argv[1]) as fh:
        cfg = json.load(fh)
    token_fd = int(sys.argv[2])
    out_fd = os.dup(1)
    applied = _set_limits(cfg)

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]
    no_new_privs = libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS

    guards = dict(rlimits=applied, no_new_privs=no_new_privs)
    guards["landlock_abi"] = _landlock(libc, no_new_privs, cfg["workdir"]) if cfg["landlock"] else 0
    guards["seccomp"] = _seccomp(libc, no_new_privs, cfg["seccomp_arch"]) if cfg["seccomp"] else False
    with open(cfg["program"]) as fh:
        source = fh.read()
    os.chdir(cfg["workdir"])
    _python_guards()
    sys.argv = ["solution.py"]
    sys.path.insert(0, cfg["workdir"])
    sys.stderr.write("GIFTLAB_GUARDS " + json.dumps(guards) + "\n")
    sys.stderr.flush()
    del cfg, applied, libc, guards
    # bound before the program runs: it may replace ``os._exit`` (a no-op would let a failed test fall
    # through to printing the token and a clean exit)
    _exit = os._exit
    _g = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(source, "solution.py", "exec"), _g)
    except BaseException:
        import traceback
        traceback.print_exc()
        for _s in (sys.stdout, sys.stderr):
            try:
                _s.flush()
            except BaseException:
                pass
        _exit(1)
    try:
        sys.stdout.flush()
    except BaseException:
        pass
    token = os.read(token_fd, 64)
    os.write(out_fd, b"\n" + token + b"\n")
    _exit(0)


main()
