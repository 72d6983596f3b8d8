"""Config ``seeds`` through Snakemake: the replicates are real jobs of the DAG (every rule's wildcard pattern
accepts a replicate's id, Direct SFT's own evaluation rule included), and config/replication.yaml plans the seed
study it documents."""

from __future__ import annotations

import re

import pytest

from helpers import REPO, snakemake, write_override

pytestmark = pytest.mark.slow  # scheduled early on the two workers (tests/conftest.py)


def planned_jobs(tmp_path, *configfiles) -> dict[str, int]:
    result = snakemake(tmp_path, "-n", "--quiet", "rules", "--", "all", configfiles=configfiles, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M)}


@pytest.mark.parametrize("profile", ["smoke"])
def test_two_seeds_double_every_training_and_evaluation_job(tmp_path, profile):
    one = planned_jobs(tmp_path, REPO / "config" / f"{profile}.yaml")
    seeds = write_override(tmp_path / "seeds.yaml", {"seeds": [1234, 7]})  # 1234: params.yaml's seed
    two = planned_jobs(tmp_path, REPO / "config" / f"{profile}.yaml", seeds)
    for rule in ("sft", "grpo", "evaluate", "evaluate_direct_sft", "evaluate_pre_rl", "consistency",
                 "mtbench_answer", "mtbench_judge"):
        assert two[rule] == 2 * one[rule], rule
    for rule in ("world", "pretrain_base", "split", "table", "claims", "figure1"):
        assert two[rule] == one[rule], rule


def test_the_replication_profile_plans_five_seeds_of_sft_and_four_gift_betas(tmp_path):
    jobs = planned_jobs(tmp_path, REPO / "config" / "replication.yaml")
    assert (jobs["sft"], jobs["grpo"], jobs["evaluate"], jobs["consistency"]) == (25, 25, 25, 50)
    assert jobs["pretrain_base"] == 1 and "mtbench_answer" not in jobs
