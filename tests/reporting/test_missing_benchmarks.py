"""A benchmark the paper profile asks for but that has no result shows as missing, never averaged away.

The paper's "Average" (Tables 1 and 2) is the mean over all six (four) benchmarks, and Table 3 and Figure 1(c, d)
average the four math benchmarks; a table or figure built from results that lack one must not print a mean over
the others beside the paper's mean over all of them."""

from __future__ import annotations

import math

import pytest

from giftlab.reporting import tables as T
from helpers import run_specs

SPECS = run_specs(betas=(10, 20))
REASONING = ["gsm8k", "math500", "aime24", "aime25", "humaneval_plus", "mbpp_plus"]
MATH = ["gsm8k", "math500", "aime24", "aime25"]


def summ(stage, backbone, run, benchmark, p1, **passk):
    rec = {"pass@1": p1, "pass@1_ci95": [p1 - 0.01, p1 + 0.01],
           "provenance": {"config": {"stage": stage, "backbone": backbone, "run": run, "benchmark": benchmark}}}
    rec.update({k.replace("pass", "pass@"): v for k, v in passk.items()})
    return rec


def test_table1_keeps_a_requested_benchmark_without_results_as_missing():
    # every run's HumanEval+ evaluation is absent (e.g. the table built by hand from the results there are)
    recs = [summ("rl", "qwen", run, b, 0.5) for run in ("sft", "gift-b10") for b in REASONING if b != "humaneval_plus"]
    df = T.table1(recs, benchmarks=REASONING, paper=True, run_specs=SPECS)
    assert "HE+" in df.columns                      # the column is there, empty
    assert df["HE+"].isna().all()
    # so the Average (the paper's: over all six) is missing too, not the mean of the other five
    assert df["Average"].isna().all()
    assert df["paper Average"].tolist() == [55.06, 59.55]


def test_table2_keeps_a_requested_benchmark_without_results_as_missing():
    ood = ["gpqa", "mmlu_pro", "mmlu_redux", "arc_challenge"]
    recs = [summ("rl", "llama", "gift-b10", b, 0.4) for b in ood if b != "mmlu_pro"]
    df = T.table2(recs, benchmarks=ood, paper=True, run_specs=SPECS)
    assert list(df.columns[4:8]) == ["GPQA", "MMLU-Redux", "ARC-Challenge", "MMLU-Pro"]   # the paper's order
    assert math.isnan(df.iloc[0]["MMLU-Pro"]) and math.isnan(df.iloc[0]["Average"])
    assert df.iloc[0]["paper Average"] == 55.24
    # a full set still averages as before
    full = T.table2(recs + [summ("rl", "llama", "gift-b10", "mmlu_pro", 0.8)], benchmarks=ood, run_specs=SPECS)
    assert full.iloc[0]["Average"] == pytest.approx(50.0)


def test_table3_row_missing_a_math_benchmark_is_missing_not_a_mean_of_the_rest():
    recs = [summ("sft", bb, run, b, 0.2 if b.startswith("aime") else 0.8, pass2=0.85, pass4=0.9, pass8=0.95)
            for bb in ("qwen", "llama") for run in ("sft", "gift-b10") for b in MATH]
    # GIFT β=10's AIME25 evaluation before RL is absent on Qwen
    recs = [r for r in recs if not (r["provenance"]["config"]["backbone"] == "qwen"
                                    and r["provenance"]["config"]["run"] == "gift-b10"
                                    and r["provenance"]["config"]["benchmark"] == "aime25")]
    df = T.table3(recs, benchmarks=MATH, paper=True, backbones=["qwen", "llama"], run_specs=SPECS)
    gift = df[(df.backbone == "qwen") & (df.run == "gift-b10")].iloc[0]
    assert gift["benchmarks"] == "gsm8k+math500+aime24"   # says what it has
    # the paper's Table 3 (and the SFT row beside it) average the four math benchmarks: a mean of three
    # (0.8, 0.8, 0.2 -> 60%, where the four give 50%) is not that number
    assert all(math.isnan(gift[f"pass@{k}"]) for k in (1, 2, 4, 8))
    sft = df[(df.backbone == "qwen") & (df.run == "sft")].iloc[0]
    assert sft["pass@1"] == pytest.approx(50.0) and sft["paper pass@1"] == 39.79
    assert df[(df.backbone == "llama") & (df.run == "gift-b10")].iloc[0]["pass@1"] == pytest.approx(50.0)
    # without a benchmark list, the benchmarks the table holds are the ones each row must have
    loose = T.table3(recs, run_specs=SPECS)
    assert math.isnan(loose[(loose.backbone == "qwen") & (loose.run == "gift-b10")].iloc[0]["pass@1"])


def _eval(backbone, run, benchmark, p1):
    return {"pass@1": p1, "pass@1_ci95": [p1 - 0.05, p1 + 0.05],
            "provenance": {"config": {"stage": "rl", "backbone": backbone, "run": run, "benchmark": benchmark}}}


def test_figure1_point_missing_a_math_benchmark_is_not_drawn_as_the_mean_of_the_rest(tmp_path):
    from giftlab.reporting.figures import figure1

    sft = [{"epochs": [{"epoch": 1, "val_loss": 1.0}, {"epoch": 2, "val_loss": 0.8}],
            "provenance": {"config": {"backbone": "llama", "run": run, "method": method, "beta": beta}}}
           for run, method, beta in (("sft", "sft", None), ("gift-b10", "gift", 10.0), ("gift-b20", "gift", 20.0))]
    evals = [_eval("llama", run, b, 0.2 if b.startswith("aime") else 0.6)
             for run in ("sft", "gift-b10", "gift-b20") for b in MATH
             if not (run == "gift-b20" and b == "aime24")]       # GIFT β=20's AIME24 result is absent
    data = figure1(sft, evals, ["llama"], tmp_path / "fig1.pdf", tmp_path / "fig1.png", benchmarks=MATH)
    points = {p["run"]: p for p in data["llama"]["rl_pass1"]}
    assert points["sft"]["pass@1"] == pytest.approx(0.4) and points["gift-b10"]["pass@1"] == pytest.approx(0.4)
    # the panel says "mean of 4 math benchmarks": (0.6 + 0.6 + 0.2) / 3 = 0.47 is not that mean
    assert math.isnan(points["gift-b20"]["pass@1"])
    assert points["gift-b20"]["missing"] == ["aime24"]
    assert (tmp_path / "fig1.png").is_file()
