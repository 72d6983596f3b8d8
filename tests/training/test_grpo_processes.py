"""Plain GRPO through ``train_grpo`` on 2 gloo processes (tests/dist/grpo_grading.py under torchrun, the launcher
``accelerate launch`` uses on GPUs): what its metrics and checkpoints count is the whole run's, not one process's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, venv_env

pytestmark = pytest.mark.slow


def test_grading_counts_every_process_completions(base_dir, tmp_path):
    """2 generation batches of 4 prompts x G = 2 are 16 reward gradings, 8 on each process. Each process's pool
    counts only its own, so metrics.json (written by whichever process renames last) and the checkpoint's
    grading_stats.json (process 0's) used to record 8: at the paper's 8 GPUs, one eighth of the run."""
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "dist" / "grpo_grading.py"), str(base_dir), str(tmp_path)]
    proc = subprocess.run(cmd, env={**venv_env(), "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["grading"]["graded"] == 16, (rank, result)
        assert result["saved"]["graded"] == 16, (rank, result)
