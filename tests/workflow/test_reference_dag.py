"""`sft.reference: cached` through Snakemake: one reference_cache job per (backbone, training split), read by the SFT
runs of the objectives that need the base (GIFT, KD, ASFT; Direct SFT would read sft then rl) and by no other."""

from __future__ import annotations

import re

import pytest

from helpers import REPO, snakemake, write_override

pytestmark = pytest.mark.slow  # scheduled early on the two workers (tests/conftest.py)


def dry_run(tmp_path, *configfiles) -> str:
    result = snakemake(tmp_path, "-n", "-p", "--", "phase_sft", configfiles=configfiles, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


def test_the_cached_mode_plans_one_cache_per_split_read_by_the_runs_that_need_the_base(tmp_path):
    smoke = REPO / "config" / "smoke.yaml"
    exact = dry_run(tmp_path, smoke)
    assert "reference_cache" not in exact
    cached = dry_run(tmp_path, smoke, write_override(tmp_path / "cached.yaml", {"sft": {"reference": "cached",
                                                                                       "reference_top_k": 8}}))
    outputs = sorted(set(re.findall(r"output: (results/sft/reference/\S+\.safetensors)", cached)))
    assert outputs == ["results/sft/reference/qwen/sft.safetensors"]  # Direct SFT trains plain SFT: no rl cache
    jobs = [block for block in re.split(r"^\[.*\]$", cached, flags=re.M) if block.strip().startswith("rule sft:")]
    readers = sorted(re.search(r"wildcards: backbone=qwen, run=(\S+)", j).group(1) for j in jobs
                     if re.search(r"input: .*results/sft/reference/qwen/sft.safetensors", j))
    assert len(jobs) == 9  # every SFT run is still planned (8 objectives, Direct SFT)
    assert readers == ["asft", "gift-b3", "sft_kd"]
    assert '"reference": "cached"' in cached and '"top_k": 8' in cached
