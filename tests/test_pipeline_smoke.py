"""A real Snakemake run of the whole DAG on the smoke profile, in an isolated directory."""

import json
import shutil

import pytest

from helpers import REPO, snakemake, write_override

pytestmark = pytest.mark.slow
SMOKE = REPO / "config" / "smoke.yaml"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    result = snakemake(workdir, "--cores", "2", configfiles=[SMOKE], timeout=900)
    if result.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log")))
        pytest.fail(f"smoke run failed:\n{result.stderr[-4000:]}\n{logs[-8000:]}")
    return workdir


def test_figure1_exists_and_is_a_real_pdf(smoke_run):
    pdf = smoke_run / "figures" / "fig1.pdf"
    png = smoke_run / "figures" / "fig1.png"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_result_json_carries_provenance(smoke_run):
    results = sorted((smoke_run / "results").rglob("*.json"))
    assert len(results) >= 10
    for path in results:
        record = json.loads(path.read_text())
        prov = record["provenance"]
        assert len(prov["config_hash"]) == 16 and prov["git_commit"] and "torch" in prov["packages"], path
        assert prov["seed"] is not None, path


def test_sft_metrics_have_a_validation_loss_per_epoch(smoke_run):
    for path in (smoke_run / "results" / "sft").rglob("metrics.json"):
        metrics = json.loads(path.read_text())
        assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
        assert all(e["val_loss"] > 0 for e in metrics["epochs"])
    model_dirs = sorted((smoke_run / "models" / "sft").glob("*/*"))
    assert len(model_dirs) == 4
    for model_dir in model_dirs:
        assert sorted(p.name for p in model_dir.iterdir() if not p.name.startswith(".")) == ["epoch_1", "epoch_2"]
        assert (model_dir / "epoch_2" / "config.json").exists()


def test_rl_and_eval_outputs_are_well_formed(smoke_run):
    rl = sorted((smoke_run / "results" / "rl").rglob("metrics.json"))
    assert len(rl) == 4  # 2 backbones x (sft, gift-b3)
    for path in rl:
        metrics = json.loads(path.read_text())
        assert metrics["steps"] == 2 and metrics["log"], path
    evals = sorted((smoke_run / "results" / "eval" / "rl").rglob("*.summary.json"))
    assert len(evals) == 4
    for path in evals:
        summary = json.loads(path.read_text())
        assert 0.0 <= summary["pass@1"] <= 1.0
        samples = path.with_name(path.name.replace(".summary.json", ".samples.jsonl"))
        rows = [json.loads(line) for line in samples.read_text().splitlines()]
        assert len(rows) == summary["n_problems"] * summary["n_samples"]


def test_second_run_schedules_nothing(smoke_run):
    result = snakemake(smoke_run, "-n", "figures/fig1.pdf", configfiles=[SMOKE], timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_one_beta_reruns_only_its_jobs(smoke_run, tmp_path):
    override = write_override(tmp_path / "beta.yaml", {"sft": {"gift_betas": [3, 7]}})
    result = snakemake(smoke_run, "-n", "--quiet", "rules", configfiles=[SMOKE, override], timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout + result.stderr
    counts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    # gift-b7 is new for both backbones: SFT, GRPO and the post-RL eval; then the figure. Nothing else.
    assert counts == {"sft": 2, "grpo": 2, "evaluate": 2, "figure1": 1, "summary": 1, "all": 1, "total": 9}, text


def test_killed_job_leftovers_do_not_block_a_rerun(smoke_run):
    # A torn temporary output and an unmarked checkpoint (what kill -9 leaves) are ignored.
    tmp_out = smoke_run / "models" / "rl" / "qwen" / ".sft.tmp"
    tmp_out.mkdir(parents=True, exist_ok=True)
    result = snakemake(smoke_run, "-n", configfiles=[SMOKE], timeout=120)
    assert "Nothing to be done" in result.stdout + result.stderr
    shutil.rmtree(tmp_out)
