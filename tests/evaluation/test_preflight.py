"""scripts/check_benchmarks.py: every benchmark of the paper plan loaded as its evaluation job loads it, one line
each, before any job runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from giftlab.config import load_config
from giftlab.evaluation.preflight import check_benchmark_files
from helpers import REPO, venv_env

FIXTURES = REPO / "tests" / "fixtures" / "benchmarks"


def _site(tmp_path: Path) -> Path:
    bench = tmp_path / "bench"
    shutil.copytree(FIXTURES, bench)
    site = tmp_path / "site.yaml"
    site.write_text(f"eval:\n  benchmark_dir: {bench}\n")
    return site


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/check_benchmarks.py", *args], cwd=REPO, env=venv_env(),
                          capture_output=True, text=True, timeout=120)


def test_every_benchmark_of_the_paper_plan_is_loaded_with_its_jobs_settings(tmp_path):
    site = _site(tmp_path)
    rows = check_benchmark_files(load_config(REPO / "params.yaml", REPO / "config" / "paper.yaml", site))
    assert [r["benchmark"] for r in rows] == ["gsm8k", "math500", "aime24", "aime25", "humaneval_plus", "mbpp_plus",
                                              "gpqa", "mmlu_pro", "mmlu_redux", "arc_challenge"]
    assert all("report" in r and r["source"].startswith(str(tmp_path)) for r in rows)
    redux = next(r for r in rows if r["benchmark"] == "mmlu_redux")["report"]
    assert (redux["rows_filtered"], redux["problems"]) == (2, 2)  # the error_type filter the job applies
    site.write_text(site.read_text() + "  per_benchmark:\n    mmlu_redux: {mmlu_redux_keep: [ok, wrong_groundtruth], "
                                       "mmlu_redux_rekey: true}\n")
    rows = check_benchmark_files(load_config(REPO / "params.yaml", REPO / "config" / "paper.yaml", site))
    assert next(r for r in rows if r["benchmark"] == "mmlu_redux")["report"]["problems"] == 3  # its job's settings


def test_the_script_prints_one_line_each_and_fails_on_a_file_that_does_not_load(tmp_path):
    site = _site(tmp_path)
    ok = _run("--configfile", "config/paper.yaml", str(site))
    assert ok.returncode == 0, ok.stderr[-2000:]
    lines = ok.stdout.splitlines()
    assert len(lines) == 10 and all("NOT the official" in line for line in lines)  # extracts, not the releases
    assert "problems read, the official" not in ok.stderr  # each mismatch once: its row's line, not a warning too
    assert _run("--configfile", "config/paper.yaml", str(site), "--strict").returncode == 1

    rows = [json.loads(line) for line in (tmp_path / "bench" / "math500.jsonl").read_text().splitlines()]
    (tmp_path / "bench" / "math500.jsonl").write_text(json.dumps({**rows[0], "answer": " "}) + "\n")
    bad = _run("--configfile", "config/paper.yaml", str(site))
    assert bad.returncode == 1
    [line] = [x for x in bad.stdout.splitlines() if x.startswith("math500")]
    assert line.startswith("math500: ERROR reading ") and "math500.jsonl: row 1: empty gold answer" in line


def test_a_separate_workspace_is_checked_with_directory(tmp_path):
    """`snakemake -s <clone>/Snakefile --directory <workspace>`: the config's relative eval.benchmark_dir is the
    workspace's, params.yaml the clone's, the config files named from where the command runs."""
    workspace = tmp_path / "ws"
    shutil.copytree(FIXTURES, workspace / "copies")
    site = tmp_path / "site.yaml"
    site.write_text("eval:\n  benchmark_dir: copies\n")
    ok = _run("--directory", str(workspace), "--configfile", "config/paper.yaml", str(site))
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert len(ok.stdout.splitlines()) == 10 and "ERROR" not in ok.stdout
    missing = _run("--directory", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.strip() == f"check_benchmarks: --directory {tmp_path}/nowhere: " \
                                                                  "no such folder"


def test_a_tiny_profile_s_missing_copy_is_the_error_the_plan_stops_with(tmp_path):
    """A tiny profile reads no hub: the preflight says what the plan will, not what the hub might give."""
    config = load_config(REPO / "params.yaml")
    config["eval"]["benchmarks"] = [*config["eval"]["benchmarks"], "gsm8k"]
    config["eval"]["benchmark_dir"] = str(tmp_path)
    [row] = [r for r in check_benchmark_files(config) if r["benchmark"] == "gsm8k"]
    assert row["error"] == f"no such file: {tmp_path}/gsm8k.jsonl (gsm8k's local copy in eval.benchmark_dir: a tiny " \
                           'profile reads no hub; docs/architecture.md, "Adding a benchmark")'
