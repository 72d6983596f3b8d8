"""Phase timings (giftlab.profiling) and the profile they feed (benchmarks/profile_run.py)."""

import importlib.util
import json
import re

import pytest
import torch

from giftlab.profiling import PREFIX, matmul_flops, phase, read_phases, trl_phases
from helpers import REPO

spec = importlib.util.spec_from_file_location("profile_script", REPO / "benchmarks" / "profile_run.py")
profile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(profile)


def test_a_phase_logs_one_line_with_its_fields_and_a_failed_phase_logs_none(capsys):
    with phase("evaluate/generate", benchmark="tiny_id") as record:
        record["tokens"] = 12
    with pytest.raises(RuntimeError), phase("evaluate/grade"):
        raise RuntimeError("boom")
    err = capsys.readouterr().err
    assert err.count(PREFIX) == 1
    (line,) = read_phases(err)
    assert line["phase"] == "evaluate/generate" and line["tokens"] == 12 and line["benchmark"] == "tiny_id"
    assert line["seconds"] >= 0


def test_read_phases_skips_other_output_and_a_torn_line():
    text = "generate: 100%|####| 3/3\rINFO something\n" + PREFIX + json.dumps({"phase": "a", "seconds": 1}) + \
        "\n" + PREFIX + '{"phase": "b", "sec'
    assert read_phases(text) == [{"phase": "a", "seconds": 1}]


def test_matmul_flops_count_every_linear_weight_twice_per_token_and_six_times_with_backward():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 10, bias=False))
    weights = 4 * 8 + 8 * 10  # the embedding is a lookup, not a matmul
    assert matmul_flops(model, 5) == 2 * weights * 5
    assert matmul_flops(model, 5, backward=True) == 6 * weights * 5


def test_trl_phases_sum_trls_own_timings_and_restore_its_logger(capsys):
    from trl.extras.profiling import ProfilingContext

    original = ProfilingContext._log_metrics
    with trl_phases("grpo/train") as totals:
        for _ in range(2):
            with ProfilingContext("GRPOTrainer.transformers.generate", report_to=[]):
                pass
    assert ProfilingContext._log_metrics is original
    assert list(totals) == ["transformers.generate"]
    (line,) = read_phases(capsys.readouterr().err)
    assert line["phase"] == "grpo/train/transformers.generate"


def _job(rule, seconds, *phases):
    return {"rule": rule, "job": f"{rule}/{seconds}", "seconds": seconds, "max_rss_mb": 100.0, "phases": [dict(p) for p in phases]}


def test_the_profile_splits_a_rules_time_into_its_phases_and_the_rest_and_sets_floors():
    jobs = [_job("sft", 10.0, {"phase": "sft/load", "seconds": 1.0},
                 {"phase": "sft/train", "seconds": 6.0, "tokens": 100, "flops": 3e9},
                 {"phase": "sft/train/validate", "seconds": 2.0}),
            _job("sft", 10.0, {"phase": "sft/load", "seconds": 1.0},
                 {"phase": "sft/train", "seconds": 6.0, "tokens": 100, "flops": 3e9}),
            _job("table", 5.0)]
    result = profile.summarise(jobs, rate=1e9)
    assert result["job_seconds"] == 25.0
    assert [(r["rule"], r["jobs"], r["seconds"]) for r in result["by_rule"]] == [("sft", 2, 20.0), ("table", 1, 5.0)]
    phases = {r["phase"]: r for r in result["by_phase"] if r["rule"] == "sft"}
    assert phases["sft/train"]["seconds"] == 12.0 and phases["sft/train/validate"]["jobs"] == 1
    # the nested phase is inside sft/train: the rest is 20 - (2 x 1 + 2 x 6), not minus the validation again
    assert phases[profile.OTHER]["seconds"] == pytest.approx(6.0)
    (floor,) = result["floors"]
    assert floor["floor_seconds"] == pytest.approx(6.0) and floor["times_floor"] == pytest.approx(2.0)


def test_the_profile_reads_snakemakes_benchmark_files_and_the_jobs_logs(tmp_path):
    bench = tmp_path / "logs" / "benchmark" / "eval" / "rl" / "qwen"
    bench.mkdir(parents=True)
    (bench / "sft.tsv").write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\t"
                                   "cpu_time\n12.5\t0:00:12\t300.1\t1\t1\t1\t0\t0\t90\t11.9\n")
    log = tmp_path / "logs" / "eval" / "rl" / "qwen" / "sft.log"
    log.parent.mkdir(parents=True)
    log.write_text("loading\n" + PREFIX + json.dumps({"phase": "evaluate/load", "seconds": 0.5}) + "\n")
    (job,) = profile.read_jobs(tmp_path)
    assert job["rule"] == "eval/rl" and job["seconds"] == 12.5 and job["max_rss_mb"] == 300.1
    assert job["phases"] == [{"phase": "evaluate/load", "seconds": 0.5}]
    with pytest.raises(SystemExit, match="no benchmark files"):
        profile.read_jobs(tmp_path / "empty")


def test_every_rule_with_a_log_writes_a_benchmark_file_beside_it():
    """Every job's wall time, CPU time and memory reach the profile (Snakemake's benchmark: directive)."""
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        logs = re.findall(r'log:\n\s+"logs/([^"]+)\.log",', text)
        benches = re.findall(r'benchmark:\n\s+"logs/benchmark/([^"]+)\.tsv",', text)
        assert logs == benches, smk.name


def test_the_process_tree_cpu_counts_a_helper_that_outlives_its_parent():
    """The command exits at once; the process it started burns 0.4 s of CPU as an orphan (like a grading pool's
    forkserver after its job): counted, because benchmarks/process_tree_cpu.py reaps it."""
    import subprocess
    import sys

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"
    parent = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {burn!r}])"
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "process_tree_cpu.py"), "--repeat", "2", "--",
                          sys.executable, "-c", parent], capture_output=True, text=True, timeout=60, check=True).stdout
    runs = re.findall(r"exit (\d+)  wall ([\d.]+) s  cpu ([\d.]+) s", out)
    assert len(runs) == 2, out
    for code, wall, cpu in runs:
        assert code == "0" and float(cpu) >= 0.4 and float(wall) >= 0.4, out


def test_the_process_tree_cpu_names_a_command_it_cannot_run():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "process_tree_cpu.py"), "--", "/nonexistent/cmd"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "process_tree_cpu: cannot run '/nonexistent/cmd': No such file or directory")
