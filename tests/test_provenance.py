"""giftlab.provenance: the hardware a result was computed on is part of its record."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import REPO


def test_hardware_names_the_cpu_and_the_instruction_set_torchs_kernels_use():
    """The instruction set is the one torch dispatches to (here forced to its portable kernels), read only where
    the job imported torch: the report jobs never do, and recording it must not make them."""
    code = ("import json, sys; from giftlab.provenance import provenance; a = provenance({})['hardware']; "
            "imported = 'torch' in sys.modules; import torch; b = provenance({})['hardware']; "
            "print(json.dumps([a, imported, b]))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    without_torch, imported, with_torch = json.loads(out.stdout)
    assert not imported and "cpu_capability" not in without_torch
    assert without_torch["cpu"] and without_torch["machine"] and with_torch["cpu"] == without_torch["cpu"]
    assert with_torch["cpu_capability"] == "DEFAULT" and with_torch["torch_threads"] >= 1
