"""The CPU time of a command and of every process it starts, helpers included.

    .venv/bin/python benchmarks/process_tree_cpu.py [--repeat N] -- COMMAND [ARG ...]

A job's own timings miss what its helper processes spend: the grading pool's forkserver and workers outlive the
process that started them by a moment and are reaped by no one who counts them. This script makes itself a child
subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), so every orphaned descendant is reparented to it and reaped here, and
prints wall time and user + system CPU of the whole tree, once per repetition. The command's own output is dropped.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_tree(command: list[str]) -> tuple[int, float, float]:
    """``(exit code, wall s, CPU s)`` of ``command`` and all its descendants (they must all have ended)."""
    cpu_before, start = children_cpu(), time.perf_counter()
    code = subprocess.call(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:  # the orphans reparented to this process: wait for each, so their CPU is counted
        try:
            os.wait()
        except ChildProcessError:
            break
    return code, time.perf_counter() - start, children_cpu() - cpu_before


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("command", nargs=argparse.REMAINDER, help="after --: the command to run")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given (put it after --)")
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("process_tree_cpu: cannot become a child subreaper (Linux only)")
    for _ in range(args.repeat):
        try:
            code, wall, cpu = run_tree(command)
        except OSError as exc:  # not found, not executable
            sys.exit(f"process_tree_cpu: cannot run {command[0]!r}: {exc.strerror}")
        print(f"exit {code}  wall {wall:.2f} s  cpu {cpu:.2f} s", flush=True)


if __name__ == "__main__":
    main()
