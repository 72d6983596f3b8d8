"""benchmarks/compare_workspaces.py: what counts as the same result (bytes; sample rows without their timing; result
JSONs without provenance and timings) and what does not."""

from __future__ import annotations

import importlib.util
import json

from helpers import REPO

spec = importlib.util.spec_from_file_location("compare_workspaces", REPO / "benchmarks" / "compare_workspaces.py")
compare_workspaces = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_workspaces)


def workspace(root, table="a,b\n1,2\n", sample_text="42", seconds=0.5, pass1=0.25, created="2026-12-05"):
    (root / "results" / "tables").mkdir(parents=True)
    (root / "results" / "tables" / "table1.csv").write_text(table)
    evals = root / "results" / "eval" / "rl" / "qwen" / "sft"
    evals.mkdir(parents=True)
    (evals / "tiny_id.samples.jsonl").write_text(json.dumps({"text": sample_text, "seconds": seconds}) + "\n")
    (evals / "tiny_id.summary.json").write_text(json.dumps({
        "pass@1": pass1, "generation_seconds": seconds, "provenance": {"created_utc": created}}))
    return root


def test_timings_and_provenance_are_not_differences(tmp_path):
    before = workspace(tmp_path / "a")
    after = workspace(tmp_path / "b", seconds=9.0, created="2026-12-06")
    assert compare_workspaces.compare(before, after) == []


def test_a_changed_table_sample_or_result_is(tmp_path):
    before = workspace(tmp_path / "a")
    after = workspace(tmp_path / "b", table="a,b\n1,3\n", sample_text="41", pass1=0.5)
    assert compare_workspaces.compare(before, after) == [
        "bytes differ: results/tables/table1.csv", "samples differ: results/eval/rl/qwen/sft/tiny_id.samples.jsonl",
        "json differs: results/eval/rl/qwen/sft/tiny_id.summary.json"]


def test_a_result_only_the_second_workspace_has_is_a_difference(tmp_path):
    before, after = workspace(tmp_path / "a"), workspace(tmp_path / "b")
    (after / "results" / "tables" / "table2.csv").write_text("a\n")
    assert compare_workspaces.compare(before, after) == [f"only in {after}: results/tables/table2.csv"]


def test_exported_weights_and_timeout_counts_are_compared(tmp_path):
    """Trained weights were not compared at all, and a key holding "time" (``grading/timeouts``) was dropped as a
    timing; ``wall_time`` still is one."""
    before, after = workspace(tmp_path / "a"), workspace(tmp_path / "b")
    for root, weights, timeouts, wall in ((before, b"\x00\x01", 0, 1.0), (after, b"\x00\x02", 3, 2.0)):
        (root / "models" / "rl" / "qwen" / "sft").mkdir(parents=True)
        (root / "models" / "rl" / "qwen" / "sft" / "model.safetensors").write_bytes(weights)
        (root / "results" / "rl.json").write_text(json.dumps({"grading/timeouts": timeouts, "wall_time": wall}))
    assert compare_workspaces.compare(before, after) == ["bytes differ: models/rl/qwen/sft/model.safetensors",
                                                         "json differs: results/rl.json"]
    (after / "results" / "rl.json").write_text(json.dumps({"grading/timeouts": 0, "wall_time": 5.0}))
    assert compare_workspaces.compare(before, after) == ["bytes differ: models/rl/qwen/sft/model.safetensors"]
