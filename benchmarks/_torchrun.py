"""Run a benchmark script's ``--worker`` under ``torchrun`` (CPU, gloo) and read what its rank 0 wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run_workers(script: str, processes: int, args: list[str], timeout: int = 600) -> dict:
    """``torchrun --nproc_per_node processes script --worker --out OUT *args``; the JSON rank 0 wrote to OUT."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", str(processes),
               script, "--worker", "--out", str(out), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                              timeout=timeout)
        if proc.returncode != 0:
            sys.exit(f"{Path(script).name}: torchrun failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())
