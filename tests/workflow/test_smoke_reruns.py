"""Snakemake again on a copy of the finished smoke run (tests/workflow/conftest.py): what a second command sees.

Nothing reruns, a changed β reruns only its jobs, a checkpoint the grid did not train is one command, the HTML
report, and the workspace's own record of its config (scripts/verify.py). In their own file, after the rest of the
suite (tests/conftest.py), so under `-n 2` they run beside the smoke run's readers instead of after them.
"""

import json
import shutil
import subprocess
import sys

import pytest

from helpers import REPO, snakemake, write_override

pytestmark = pytest.mark.slow
SMOKE = REPO / "config" / "smoke.yaml"


def test_the_smoke_workspace_is_this_configs_own_and_another_profile_would_not_record_it(smoke_copy):
    """scripts/verify.py: intact, and made by params.yaml + smoke.yaml; not by the tiny default (dvc commit -f)."""
    run = lambda *extra: subprocess.run([sys.executable, str(REPO / "scripts" / "verify.py"), str(smoke_copy), *extra],
                                        capture_output=True, text=True, timeout=300)
    (smoke_copy / "params.yaml").write_text((REPO / "params.yaml").read_text())  # the clone's params.yaml
    ok = run("--configfile", str(SMOKE))
    assert ok.returncode == 0 and "0 damaged; 0 made by another config" in ok.stderr, ok.stdout[-2000:]
    tiny = run()
    assert tiny.returncode == 1 and "results/split.json: made by another config" in tiny.stdout


def test_changing_one_beta_reruns_only_its_jobs(smoke_copy, tmp_path):
    override = write_override(tmp_path / "beta.yaml", {"sft": {"gift_betas": [3, 7]},
                                                       "grpo": {"runs": ["sft", "gift-b3", "gift-b7"]}})
    result = snakemake(smoke_copy, "-n", "--quiet", "rules", configfiles=[SMOKE, override], timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout + result.stderr
    counts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    # gift-b7 is new (and goes on to RL, as smoke.yaml's SFT and GIFT do): its SFT, GRPO, 2 evaluation jobs (one model each: after RL on the 4 benchmarks, before on
    # the reasoning one), 2 consistency jobs and its MT-Bench answers and judgement; then every table and figure.
    # Nothing else.
    assert counts == {"sft": 1, "grpo": 1, "evaluate": 1, "evaluate_pre_rl": 1, "consistency": 2, "figure1": 1,
                      "figure2": 1, "figure3": 1, "table": 5, "rl_gain": 1, "claims": 1, "summary": 1,
                      "mtbench_answer": 1, "mtbench_judge": 1, "all": 1, "total": 20}, text


def test_trackers_checkpoint_interval_and_grading_processes_rerun_nothing(smoke_copy, tmp_path):
    # settings that change no result (giftlab.runtime_keys.RUNTIME_KEYS): before, each retrained, re-evaluated or
    # re-judged every run
    override = write_override(tmp_path / "runtime.yaml", {"sft": {"report_to": []}, "grpo": {"save_steps": 7,
                              "report_to": []}, "eval": {"grading_workers": 1, "code_workers": 1,
                                                         "save_every_prompts": 3},
                              "mtbench": {"judge": {"timeout_s": 5, "max_retries": 1, "max_in_flight": 2}}})
    result = snakemake(smoke_copy, "-n", configfiles=[SMOKE, override], timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_second_run_schedules_nothing_and_a_killed_jobs_leftovers_do_not_change_that(smoke_copy):
    # A torn temporary output and an unmarked checkpoint (what kill -9 leaves) are ignored.
    (smoke_copy / "models" / "rl" / "qwen" / ".sft.tmp").mkdir(parents=True, exist_ok=True)
    result = snakemake(smoke_copy, "-n", configfiles=[SMOKE], timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def test_html_report_has_every_figure_and_table(smoke_copy):
    result = snakemake(smoke_copy, "--report", "report.html", configfiles=[SMOKE], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    html = (smoke_copy / "report.html").read_text(errors="replace")
    for name in ("fig1.pdf", "fig2.pdf", "fig3.pdf", "table1.csv", "table4.csv", "claims.md"):
        assert name in html, name


def test_a_checkpoint_the_pipeline_did_not_train_is_one_command(smoke_copy, tmp_path):
    """config models.extra + `snakemake extra_models` (docs/scale.md): a copied checkpoint is evaluated on every
    benchmark, compared with its backbone's base, and tabulated; nothing of the grid reruns."""
    import csv

    colleague = tmp_path / "colleague"
    shutil.copytree(smoke_copy / "models" / "base" / "qwen", colleague)
    override = write_override(tmp_path / "extra.yaml", {"models": {"extra": {"colleague": {
        "path": str(colleague), "backbone": "qwen"}}}})
    result = snakemake(smoke_copy, "--cores", "2", "extra_models", configfiles=[SMOKE, override], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ran = {line.split("Rule: ")[1].rstrip(")") for line in (result.stdout + result.stderr).splitlines()
           if "(Rule: " in line}
    assert ran == {"evaluate_extra", "consistency_extra", "table_extra", "extra_models"}, ran
    [row] = list(csv.DictReader((smoke_copy / "results" / "extra" / "extra_models.csv").open()))
    assert row["model"] == "colleague" and float(row["base→model cos"]) == pytest.approx(1.0)  # a copy of the base
    assert float(row["base→model kl"]) == pytest.approx(0.0, abs=1e-6)
    summary = json.loads((smoke_copy / "results" / "extra" / "eval" / "colleague" / "tiny_id.summary.json").read_text())
    assert summary["provenance"]["config"]["stage"] == "extra" and summary["benchmark_checks"]["duplicates_dropped"] == 0
