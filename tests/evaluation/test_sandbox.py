"""The code sandbox: hostile programs are contained, scored as failures, the evaluator lives on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from giftlab.evaluation.grading import make_grader
from giftlab.evaluation.sandbox import capabilities, run_program

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox targets Linux")
pytestmark = linux_only
LIMITS = dict(timeout=2.0, memory_mb=512)
CAPS = capabilities()
KERNEL = pytest.mark.skipif(not (CAPS["seccomp"] and CAPS["landlock_abi"] >= 6),
                            reason="needs seccomp and Landlock ABI >= 6")


def run(src, **kw):
    return run_program(src, **{**LIMITS, **kw})


def _children():
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())],
                         capture_output=True, text=True).stdout
    return {line.split(None, 1)[0]: line for line in out.splitlines()
            if line.strip() and "ps -o" not in line}


# Long-lived children that other tests may have started (e.g. the grading pool's forkserver).
_BEFORE = _children()


def no_children_left():
    """No process of ours is left behind (the sandbox kills its whole group)."""
    new = {pid: args for pid, args in _children().items() if pid not in _BEFORE}
    return not any("giftlab-sandbox" in a or "python" in a for a in new.values()
                   if "forkserver" not in a and "multiprocessing" not in a)


def test_plain_program_passes_and_failures_fail():
    ok = run("def f(x):\n    return x + 1\nassert f(1) == 2\nprint('out')")
    assert ok.passed and ok.status == "passed" and ok.stdout == "out"
    bad = run("assert 1 == 2")
    assert not bad.passed and bad.status == "failed" and "AssertionError" in bad.stderr
    syntax = run("def f(:\n")
    assert not syntax.passed and "SyntaxError" in syntax.stderr
    assert run("import numpy as np\nassert np.arange(4).sum() == 6").passed


def test_runs_in_a_fresh_temp_dir_with_a_clean_env(tmp_path):
    r = run("import os, sys\nprint(os.getcwd())\nprint(sorted(os.environ))\n"
            "open('scratch.txt', 'w').write('ok')")
    assert r.passed, r.stderr
    cwd = r.stdout.splitlines()[0]
    assert "giftlab-sandbox-" in cwd and not os.path.exists(cwd)  # removed afterwards
    assert "HF_TOKEN" not in r.stdout and "'HOME'" in r.stdout


@pytest.mark.parametrize("name, src", [
    ("infinite loop", "while True:\n    pass"),
    ("SIGALRM/SIGXCPU overridden", "import signal\n"
     "for s in (signal.SIGALRM, signal.SIGXCPU, signal.SIGTERM, signal.SIGINT):\n"
     "    signal.signal(s, signal.SIG_IGN)\nsignal.alarm(0)\nwhile True:\n    pass"),
    ("sleeping forever", "import time\ntime.sleep(10**6)"),
])
def test_time_limits_kill_and_score_zero(name, src):
    t0 = time.monotonic()
    r = run(src)
    assert not r.passed and r.timed_out and r.status == "timeout", (name, r)
    assert time.monotonic() - t0 < 6
    assert no_children_left()


def test_fork_bomb_is_contained():
    src = ("import os\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n"
           "        import ctypes\n        ctypes.CDLL(None).fork()\n")
    before = len(os.listdir("/proc"))
    r = run(src)
    assert not r.passed
    time.sleep(0.2)
    assert len(os.listdir("/proc")) < before + 20
    assert no_children_left()


def test_os_exit_and_sys_exit_before_tests_fail():
    for src in ("import os\nos._exit(0)\nassert False", "import sys\nsys.exit(0)",
                "raise SystemExit", "import atexit, os\natexit.register(os._exit, 0)\n"
                "raise ValueError",
                # a no-op os._exit must not let a failed assert fall through to the token
                "import os\nos._exit = lambda *a: None\nassert 1 == 2"):
        r = run(src)
        assert not r.passed, src


def test_memory_hog_is_a_memory_error():
    for src in ("x = bytearray(8 * 1024**3)",
                "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024**2))"):
        r = run(src)
        assert not r.passed and ("MemoryError" in r.stderr or r.status in ("killed", "timeout"))


def test_output_flood_is_bounded():
    r = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", fsize_mb=1)
    assert not r.passed and len(r.stdout) <= 4000


def test_writing_outside_its_directory_is_refused(tmp_path):
    target = tmp_path / "outside.txt"
    src = (f"try:\n    open({str(target)!r}, 'w').write('pwned')\nexcept Exception:\n    pass\n"
           f"import ctypes\nfd = ctypes.CDLL(None).open({str(target).encode()!r}, 0o101, 0o644)\n"
           "assert fd >= 0, 'refused'\n")
    r = run(src)
    assert not r.passed
    if CAPS["landlock_abi"] >= 1:
        assert not target.exists()  # kernel-enforced: even the raw open(2) is refused
    else:
        pytest.skip("no Landlock: only the Python-level guard applies")


@pytest.mark.parametrize("kernel_guards", [True, False])
def test_metadata_outside_its_directory_is_unchanged(tmp_path, kernel_guards):
    """Landlock does not cover chmod/chown/utime: seccomp refuses them (the Python guards without it)."""
    if kernel_guards and not CAPS["seccomp"]:
        pytest.skip("no seccomp")
    target = tmp_path / "outside.txt"
    target.write_text("data")
    before = os.stat(target)
    calls = [f"os.chmod({str(target)!r}, 0)", f"os.utime({str(target)!r}, (2e9, 2e9))",
             f"os.chown({str(target)!r}, 12345, 12345)"]
    if kernel_guards:  # without seccomp the raw syscall through ctypes still works (documented)
        calls.append(f"ctypes.CDLL(None).chmod({str(target).encode()!r}, 0)")
    for call in calls:
        r = run(f"import os, ctypes\nassert {call} in (None, 0)", kernel_guards=kernel_guards)
        assert not r.passed, call
    after = os.stat(target)
    assert (after.st_mode, after.st_mtime, after.st_uid) == (before.st_mode, before.st_mtime, before.st_uid)


def test_network_attempt_fails_and_never_connects():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.3)
    port = srv.getsockname()[1]
    try:
        for src in (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)",
                    "import _socket\ns = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
                    f"s.settimeout(1)\ns.connect(('127.0.0.1', {port}))",
                    "import urllib.request\nurllib.request.urlopen('http://example.com', "
                    "timeout=1)"):
            r = run(src)
            assert not r.passed, src
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()


@KERNEL
def test_cannot_signal_processes_outside():
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        r = run(f"import ctypes\nassert ctypes.CDLL(None).kill({victim.pid}, 9) == 0")
        assert not r.passed
        time.sleep(0.1)
        assert victim.poll() is None
        r = run(f"import os\nos.kill({os.getpid()}, 9)")
        assert not r.passed
    finally:
        victim.kill()
        victim.wait()


@KERNEL
def test_kernel_guards_are_reported():
    r = run("pass")
    assert r.passed
    assert r.guards["seccomp"] is True and r.guards["landlock_abi"] >= 6
    assert r.guards["rlimits"]["RLIMIT_AS"] == 512 << 20


def test_hostile_responses_through_the_code_grader():
    """Graded as failures, in order, the evaluator keeps going."""
    rec = {"id": "t", "prompt": "", "gold": "", "kind": "code", "entry_point": "f",
           "tests": "assert f(2) == 4\n", "setup": "", "prefix": ""}
    responses = [
        "```python\ndef f(x):\n    return 2 * x\n```",
        "```python\nimport os\nos._exit(0)\n```",
        "```python\ndef f(x):\n    while True: pass\n```",
        "```python\nimport os\nwhile True: os.fork()\n```",
        "```python\ndef f(x):\n    return 2 * x\n```",
    ]
    with make_grader("code", code_timeout=2, code_memory_mb=512, code_workers=2) as grade:
        out = grade(responses, [rec] * len(responses))
    assert [r.correct for r in out] == [True, False, False, False, True]
    assert out[2].timed_out and out[2].detail == "timeout"
    assert no_children_left()


def test_fallback_without_kernel_guards_still_contains_plain_python():
    """seccomp/Landlock off: rlimits, the wall clock and the Python guards remain."""
    for src in ("import os\nos.fork()", "import socket\nsocket.socket()",
                "while True:\n    pass", "x = bytearray(8 * 1024**3)"):
        r = run(src, kernel_guards=False)
        assert not r.passed, src
    assert run("print(1)", kernel_guards=False).passed
