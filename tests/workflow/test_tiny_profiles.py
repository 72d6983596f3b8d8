"""The tiny default and config/two_backbones.yaml plan what the README says they build: the default the Qwen2-style
base's grid (86 jobs, ~12 min on 2 cores), the two-backbone profile both bases' (the default until e839c6b)."""

from __future__ import annotations

import re

import pytest

from helpers import REPO, snakemake

pytestmark = pytest.mark.slow  # real Snakemake dry runs (tests/conftest.py schedules them early)

# rule -> jobs per backbone grid: 8 objectives with GIFT at 3 betas + Direct SFT; RL from 10 of them, Direct RL,
# LUFFY, ReLIFT; Table 5 answers and judges the 10 SFT-then-RL policies; consistency Base->SFT and SFT->RL of 4 runs
PER_BACKBONE = {"pretrain_base": 1, "sft": 11, "grpo": 13, "evaluate": 13, "evaluate_pre_rl": 4,
                "evaluate_direct_sft": 1, "consistency": 8, "mtbench_answer": 10, "mtbench_judge": 10}


def planned(tmp_path, *configfiles) -> tuple[dict[str, int], int]:
    result = snakemake(tmp_path, "-n", "--quiet", "rules", configfiles=configfiles, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    jobs = {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M)}
    return jobs, jobs.pop("total")


def test_the_default_plans_one_backbone_grid(tmp_path):
    jobs, total = planned(tmp_path)
    assert {rule: jobs.get(rule) for rule in PER_BACKBONE} == PER_BACKBONE
    assert total == 86


def test_two_backbones_plans_both_grids(tmp_path):
    jobs, total = planned(tmp_path, REPO / "config" / "two_backbones.yaml")
    assert {rule: jobs.get(rule) for rule in PER_BACKBONE} == {rule: 2 * n for rule, n in PER_BACKBONE.items()}
    assert total == 157


def test_two_backbones_samples_eight_times_after_rl_where_the_default_samples_four():
    from giftlab.config import load_config

    default = load_config(REPO / "params.yaml")
    both = load_config(REPO / "params.yaml", REPO / "config" / "two_backbones.yaml")
    assert (default["eval"]["n_samples"], both["eval"]["n_samples"]) == (4, 8)
    assert both["figures"]["backbones"] is None and both["figures"]["fig1"]["backbones"] == ["llama", "qwen"]


def test_pretraining_takes_both_cores_only_where_one_base_pretrains_alone():
    """params.yaml: the default's one base on 2 threads; two_backbones: the two bases side by side, 1 thread each;
    slurm-local: its jobs have 1 CPU each (cpus_per_task), so 1 thread."""
    from giftlab.config import load_config
    from giftlab.resources import rule_threads

    def threads(*files):
        return rule_threads(load_config(REPO / "params.yaml", *(REPO / "config" / f for f in files)), "pretrain_base")

    assert (threads(), threads("two_backbones.yaml"), threads("smoke.yaml", "slurm-local.yaml")) == (2, 1, 1)


def test_table5_is_a_target_only_where_the_config_plans_it(tmp_path):
    """With `mtbench: {enabled: false}` (config/replication.yaml, config/rehearsal.yaml) `snakemake
    results/tables/table5.md` used to run the table rule on no scores and write a Table 5 of headers only, which
    looked built; it is no target there, as table6 is none anywhere."""
    off = tmp_path / "off.yaml"
    off.write_text("mtbench: {enabled: false}\n")
    result = snakemake(tmp_path, "-n", "results/tables/table5.md", configfiles=[off], timeout=120)
    assert result.returncode != 0
    assert "No rule to produce results/tables/table5.md" in result.stdout + result.stderr
    planned = snakemake(tmp_path, "-n", "results/tables/table4.md", configfiles=[off], timeout=120)
    assert planned.returncode == 0, (planned.stdout + planned.stderr)[-2000:]
    default = snakemake(tmp_path, "-n", "results/tables/table5.md", timeout=120)
    assert default.returncode == 0, (default.stdout + default.stderr)[-2000:]
