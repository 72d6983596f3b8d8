"""Under `dvc repro`, a phase's files that no rule makes are deps of its stage (giftlab.dvc_deps): otherwise an edited
benchmark copy leaves `dvc status` "up to date" and the tables on the old answers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from giftlab.cli import ConfigError
from giftlab.config import load_config
from giftlab.dvc_deps import check_stage_deps
from giftlab.plan import Plan
from helpers import REPO, paper_hub_cache, snakemake, write_override


def _dvc_yaml(root: Path, **deps) -> None:
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {name: {"cmd": "true", "deps": d}
                                                             for name, d in deps.items()}}))


def test_a_file_read_by_a_stage_must_be_among_its_deps(tmp_path):
    (tmp_path / "data" / "benchmarks").mkdir(parents=True)
    (tmp_path / "data" / "benchmarks" / "gsm8k.jsonl").write_text("{}\n")
    inputs = {"eval": ["data/benchmarks/gsm8k.jsonl", "data/benchmarks/absent.jsonl"]}
    _dvc_yaml(tmp_path, eval=["models/rl", "data/tiny"])
    with pytest.raises(ConfigError, match=r"^dvc.yaml: stage eval reads data/benchmarks/gsm8k.jsonl, which no rule "
                                          r"makes, but its deps do not list it") as exc:
        check_stage_deps(inputs, tmp_path, stage="eval")
    assert "\n" not in str(exc.value) and "absent" not in str(exc.value)  # a file not here is not checked
    for listed in (["data/benchmarks"], ["./data/benchmarks/gsm8k.jsonl"], [str(tmp_path / "data")]):
        _dvc_yaml(tmp_path, eval=listed)
        check_stage_deps(inputs, tmp_path, stage="eval")  # the file or a folder holding it, however written
    _dvc_yaml(tmp_path, eval=["data/bench"])  # a sibling whose name is a prefix holds nothing
    with pytest.raises(ConfigError):
        check_stage_deps(inputs, tmp_path, stage="eval")


def test_a_symlinked_copy_in_a_listed_folder_is_covered(tmp_path):
    """A benchmark copy linked from a shared folder (data/benchmarks/gsm8k.jsonl -> /shared/gsm8k.jsonl) lies in the
    listed data/benchmarks, whose hash DVC takes through the link; resolved, it seemed to lie outside it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "gsm8k.jsonl").write_text("{}\n")
    ws = tmp_path / "ws"
    (ws / "data" / "benchmarks").mkdir(parents=True)
    (ws / "data" / "benchmarks" / "gsm8k.jsonl").symlink_to(shared / "gsm8k.jsonl")
    _dvc_yaml(ws, eval=["data/benchmarks"])
    check_stage_deps({"eval": ["data/benchmarks/gsm8k.jsonl"]}, ws, stage="eval")
    _dvc_yaml(ws, eval=[str(shared)])  # the link's target listed: covered too
    check_stage_deps({"eval": ["data/benchmarks/gsm8k.jsonl"]}, ws, stage="eval")


def test_outside_dvc_or_for_another_stage_nothing_is_checked(tmp_path, monkeypatch, capsys):
    (tmp_path / "bench.jsonl").write_text("{}\n")
    _dvc_yaml(tmp_path, eval=["models"], sft=["models"])
    monkeypatch.delenv("DVC_STAGE", raising=False)
    check_stage_deps({"eval": ["bench.jsonl"]}, tmp_path)      # `snakemake` run by hand
    monkeypatch.setenv("DVC_STAGE", "sft")
    check_stage_deps({"eval": ["bench.jsonl"]}, tmp_path)      # a stage the plan names no such file for
    for address in ("dvc.yaml:eval", "../dvc.yaml:eval"):  # `dvc repro dvc.yaml:eval`, run from a subfolder
        monkeypatch.setenv("DVC_STAGE", address)
        with pytest.raises(ConfigError, match="stage eval reads bench.jsonl"):
            check_stage_deps({"eval": ["bench.jsonl"]}, tmp_path)
    _dvc_yaml(tmp_path, sft=["models"])  # no such stage in the workspace's dvc.yaml: said, not checked
    check_stage_deps({"eval": ["bench.jsonl"]}, tmp_path, stage="eval")
    assert "no stage eval in" in capsys.readouterr().err


def _scale_md_recipe() -> str:
    """docs/scale.md's "The paper run" script that turns params.yaml and dvc.yaml into the paper's."""
    text = (REPO / "docs" / "scale.md").read_text()
    return re.search(r"python - \$CONFIGS <<'EOF'\n(.*?)\nEOF\n", text, flags=re.S).group(1)


def test_the_paper_runs_dvc_yaml_lists_every_file_its_stages_read(tmp_path, monkeypatch):
    """docs/scale.md's recipe, run as written, makes a dvc.yaml whose stages pass the check with the paper's local
    benchmark copies, MT-Bench's files and a local DeepMath-103K in place."""
    for name in ("params.yaml", "dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "config", tmp_path / "config")
    paper = load_config(REPO / "params.yaml", REPO / "config" / "paper.yaml")
    for bench in paper["eval"]["benchmarks"]:
        (tmp_path / paper["eval"]["benchmark_dir"]).mkdir(parents=True, exist_ok=True)
        (tmp_path / paper["eval"]["benchmark_dir"] / f"{bench}.jsonl").write_text("{}\n")
    for f in (paper["mtbench"]["questions"], paper["mtbench"].get("reference_answers")):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("{}\n")
    (tmp_path / "deepmath").mkdir()  # a local download
    write_override(tmp_path / "config" / "local_data.yaml", {"data": {"path": "deepmath"}})
    subprocess.run([sys.executable, "-", "config/paper.yaml", "config/local_data.yaml"], input=_scale_md_recipe(),
                   cwd=tmp_path, text=True, check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)  # the workspace: the plan finds the copies in eval.benchmark_dir from it
    inputs = Plan(load_config(tmp_path / "params.yaml")).phase_inputs()
    assert inputs["split"] == ["deepmath"] and len(inputs["eval"]) == 10 and inputs["grpo"]
    assert len(inputs["mtbench"]) == 2
    for stage in inputs:
        check_stage_deps(inputs, tmp_path, stage=stage)
    # the recipe's step for the benchmark copies, left out: the check names the first copy the stage reads
    doc = yaml.safe_load((tmp_path / "dvc.yaml").read_text())
    doc["stages"]["eval"]["deps"].remove(paper["eval"]["benchmark_dir"])
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="stage eval reads data/benchmarks/gsm8k.jsonl"):
        check_stage_deps(inputs, tmp_path, stage="eval")


def test_dvc_repro_of_a_tiny_workspace_with_a_benchmark_copy_stops_until_its_stage_lists_it(tmp_path):
    """The Snakemake run of `dvc repro`'s eval stage (DVC_STAGE=eval), in a tiny workspace whose config evaluates a
    copy in eval.benchmark_dir as well: one line naming the copy and the stage, before any job."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "data" / "benchmarks").mkdir(parents=True)
    (tmp_path / "data" / "benchmarks" / "gsm8k.jsonl").write_text(
        '{"id": "1", "prompt": "1+1?", "gold": "2", "kind": "math"}\n')
    override = write_override(tmp_path / "more.yaml", {"eval": {"benchmarks": ["tiny_id", "tiny_ood", "gsm8k"],
                                                                "ood": ["tiny_ood"]}})
    configs = [REPO / "config" / "smoke.yaml", override]
    stage = snakemake(tmp_path, "-n", "phase_eval", configfiles=configs, timeout=300, env={"DVC_STAGE": "eval"})
    assert stage.returncode != 0
    assert stage.stderr.strip().splitlines()[-1].startswith(
        "dvc.yaml: stage eval reads data/benchmarks/gsm8k.jsonl, which no rule makes, but its deps do not list it")
    by_hand = snakemake(tmp_path, "-n", "phase_eval", configfiles=configs, timeout=300)  # no DVC: no check
    assert by_hand.returncode == 0, by_hand.stderr[-2000:]
    doc = yaml.safe_load((tmp_path / "dvc.yaml").read_text())
    doc["stages"]["eval"]["deps"].append("data/benchmarks")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(doc))
    listed = snakemake(tmp_path, "-n", "phase_eval", configfiles=configs, timeout=300, env={"DVC_STAGE": "eval"})
    assert listed.returncode == 0, listed.stderr[-2000:]
