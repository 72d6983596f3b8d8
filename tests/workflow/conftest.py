"""The smoke workspace: one real Snakemake run of the whole DAG on the smoke profile, shared by every test that
needs one (test_pipeline_smoke.py reads it, test_smoke_reruns.py runs Snakemake again on a copy of it).

Built once per test session: under the README's `-n 2 --dist loadfile` the two workers share it through a folder
of the session's base temp and an OS lock (pytest-xdist's recipe for a session fixture run once), so whichever
worker comes second waits for the first one's run instead of repeating it.
"""

from __future__ import annotations

import fcntl
import json
import shutil

import pytest

from helpers import REPO, snakemake

SMOKE = REPO / "config" / "smoke.yaml"


def smoke_targets() -> list[str]:
    """`all`, and the SFT runs smoke.yaml sends to no RL (`grpo.runs`): every objective trains through the `sft`
    rule, while GRPO and evaluation (the same code from any checkpoint) run from SFT and GIFT only."""
    from giftlab.config import load_config
    from giftlab.plan import Plan

    plan = Plan(load_config(REPO / "params.yaml", SMOKE))
    return ["all", *plan.sft_metrics([run for run in plan.sft_runs() if not plan.runs[run].rl])]


def _build(workdir):
    """Run the smoke DAG in ``workdir``; the failure text (stderr and every job log's tail) or None."""
    result = snakemake(workdir, "--cores", "2", *smoke_targets(), configfiles=[SMOKE], timeout=900)
    if result.returncode == 0:
        return None
    logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log")))
    return f"smoke run failed:\n{result.stderr[-4000:]}\n{logs[-8000:]}"


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, worker_id):
    """The folder of the finished smoke run (read it; copy it before running anything in it)."""
    if worker_id == "master":  # not distributed: this process alone
        workdir = tmp_path_factory.mktemp("smoke")
        failure = _build(workdir)
        if failure:
            pytest.fail(failure)
        return workdir
    shared = tmp_path_factory.getbasetemp().parent  # one per session, above each worker's own base temp
    workdir, status = shared / "smoke", shared / "smoke.status.json"
    with open(shared / "smoke.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel however this worker ends
        if not status.exists():
            workdir.mkdir()
            status.write_text(json.dumps({"failure": _build(workdir)}))
    failure = json.loads(status.read_text())["failure"]
    if failure:  # the other worker's run failed: the same message, without a second run
        pytest.fail(failure)
    return workdir


@pytest.fixture(scope="module")
def smoke_copy(smoke_run, tmp_path_factory):
    """A copy of the finished smoke run (timestamps and Snakemake's records kept) for tests that run Snakemake
    in it, so they cannot change what the readers of ``smoke_run`` see."""
    copy = tmp_path_factory.mktemp("smoke-copy") / "ws"
    shutil.copytree(smoke_run, copy, symlinks=True)
    return copy
