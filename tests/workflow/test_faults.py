"""Faults in the default suite (the whole report: `python benchmarks/faults.py`, docs/faults.md): a real kill -9 of
a run in the middle of a job, then the same command finishes it from its checkpoint; a checkpoint cut short
afterwards stops the next plan in one line, and forcing it, as the line says, plans its rebuild."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time

import pytest
import yaml

from giftlab.training.checkpoints import MARKER
from helpers import REPO

pytestmark = pytest.mark.slow
TARGET = "models/base/qwen"  # the tiny world and one pretrained base: a job that checkpoints as it goes


def _faults():
    spec = importlib.util.spec_from_file_location("faults", REPO / "benchmarks" / "faults.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["faults"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_kill_9_mid_job_then_the_same_command_finishes_it_and_a_torn_checkpoint_is_refused(tmp_path):
    """(That the resumed result equals an uninterrupted one: tests/training/test_pretrain.py, and docs/faults.md's
    20 kills over the whole pipeline.)"""
    faults = _faults()
    profile = tmp_path / "faults.yaml"
    profile.write_text(yaml.safe_dump(faults.FAULT_PROFILE))
    work = faults.new_workspace(tmp_path, "killed")
    proc = faults.start(work, profile, "--", TARGET)
    deadline = time.monotonic() + 300
    # kill -9 once pretraining has saved a resumable checkpoint: the rerun has something to resume from. Its
    # completion stamp, not trainer_state.json: a kill between the two left a checkpoint no rerun may trust, so the
    # rerun started from step 0 (seen once in a fresh clone's suite)
    while not any((work / "work" / "pretrain" / "qwen").glob(f"checkpoint-*/{MARKER}")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    faults.kill_group(proc)
    assert not (work / TARGET / "model.safetensors").exists()  # nothing that looks complete
    rerun = faults.run(work, profile, "--", TARGET, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    metrics = json.loads((work / "results" / "pretrain" / "qwen.json").read_text())
    assert metrics["resumed_from_step"] > 0 and [s for s, _ in metrics["loss_curve"]][-1] == metrics["steps"]

    weights = work / TARGET / "model.safetensors"
    faults.truncate(weights, 0.9)
    refused = faults.run(work, profile, "-n", "--", TARGET, timeout=300)
    line = faults.last_line(refused.stdout + refused.stderr)
    assert refused.returncode != 0 and line.startswith("stopped before any job: models/base/qwen/model.safetensors is "
                                                       "damaged") and "Traceback" not in refused.stderr
    assert "`snakemake --force <file or folder>`" in line
    plan = faults.run(work, profile, "-n", "--quiet", "rules", "--force", "--", TARGET, timeout=300)  # as it says
    assert plan.returncode == 0 and re.search(r"^pretrain_base\s+1$", plan.stdout, re.M), plan.stdout[-2000:]
