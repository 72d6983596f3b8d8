"""Paper numbers (Tables 1–5), the table builders/writer, and the claims report."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from functools import partial

from giftlab.reporting import claims as CL
from giftlab.reporting import paper_numbers as pn
from giftlab.reporting import tables as T
from giftlab.reporting.runs import RunSpecs
from helpers import run_specs

# what every report job receives from the plan: method, β and strategy per run id (never parsed from the id)
SPECS = run_specs()
table1, table2, table3, table4 = (partial(f, run_specs=SPECS) for f in (T.table1, T.table2, T.table3, T.table4))
claim_gift_beats_sft = partial(CL.claim_gift_beats_sft, run_specs=SPECS)
claim_passk_advantage_grows = partial(CL.claim_passk_advantage_grows, run_specs=SPECS)
claim_gift_more_consistent = partial(CL.claim_gift_more_consistent, run_specs=SPECS)
write_claims = partial(CL.write_claims, run_specs=SPECS)

# ../shared beside the checkout (developers and CI have it; users do not: the test then skips)
PAPER_TEXT = Path(__file__).resolve().parents[3] / "shared" / "paper" / "gift-paper.txt"


def summ(stage, backbone, run, benchmark, p1, ci=None, **passk):
    rec = {"pass@1": p1, "n_problems": 100, "n_samples": 8,
           "provenance": {"config": {"stage": stage, "backbone": backbone, "run": run, "benchmark": benchmark}}}
    if ci is not None:
        rec["pass@1_ci95"] = list(ci)
    for key, value in passk.items():
        rec[key.replace("pass", "pass@")] = value
    return rec


def cons(backbone, run, pair, cos, l2, kl, kl_ci=None, overlap=None):
    rec = {"cos": cos, "l2": l2, "kl": kl,
           "provenance": {"config": {"backbone": backbone, "run": run, "stage_pair": pair}}}
    if kl_ci:
        rec["kl_ci95"] = list(kl_ci)
    if overlap:
        rec["topk_overlap"] = {str(k): v for k, (v, _) in overlap.items()}
        rec["topk_overlap_ci95"] = {str(k): list(ci) for k, (_, ci) in overlap.items()}
    return rec


# ---------------------------------------------------------------- paper numbers

def test_paper_tables_shape_and_cells():
    sizes = {1: (22, 7), 2: (18, 5), 3: (4, 4), 4: (4, 6), 5: (16, 9)}
    for t, (rows, cols) in sizes.items():
        df = pn.load_paper_table(t)
        assert list(df.columns) == list(pn.COLUMNS)
        assert len(df) == rows * cols, t
        assert not df.duplicated(["backbone", "strategy", "benchmark"]).any()
    assert pn.paper_value(1, "Qwen2.5-7B", "GIFT", "Average") == 59.55
    assert pn.paper_value(1, "qwen", "SFT", "AIME24") == 13.33
    assert pn.paper_value(1, "llama", "Direct RL", "GSM8K") == 49.18
    assert pn.paper_value(2, "Llama-3.1-8B", "PSFT", "ARC-Challenge") == 46.54
    assert pn.paper_value(2, "qwen", "ReLIFT", "Average") == 64.55
    assert pn.paper_value(3, "qwen", "GIFT", "pass@8") == 62.81
    assert pn.paper_value(3, "llama", "SFT", "pass@1") == 19.06
    assert pn.paper_value(4, "qwen", "GIFT", "sft_rl.l2") == 47.34
    assert pn.paper_value(4, "llama", "SFT", "base_sft.kl") == 0.5893
    assert pn.paper_value(5, "llama", "GIFT", "Writing") == 6.4
    assert pn.paper_value(5, "qwen", "SFT + KD", "Total") == 6.12
    assert math.isnan(pn.paper_value(2, "qwen", "SFT + KD", "GPQA"))  # not in Table 2
    assert math.isnan(pn.paper_value(1, "llama", "LUFFY", "Average"))  # omitted for Llama
    wide = pn.paper_wide(1)
    assert list(wide.columns[3:]) == ["GSM8K", "AIME24", "AIME25", "MATH500", "HE+", "MBPP+", "Average"]
    assert wide.iloc[0]["strategy"] == "Direct SFT" and wide.iloc[-1]["strategy"] == "GIFT"


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason="paper text not available")
def test_paper_cells_match_paper_text():
    """Every row of Tables 1, 2, 5 and the GIFT rows of 3, 4 appear verbatim in the paper text."""
    text = PAPER_TEXT.read_text()
    for t in (1, 2, 5):
        raw = pd.read_csv(pn.PAPER_DIR / f"table{t}.csv", dtype=str)
        for (bb, strategy), grp in raw.groupby(["backbone", "strategy"], sort=False):
            line = f"{strategy}\t" + "\t".join(grp["value"])
            assert line in text, (t, bb, strategy)
    assert "GIFT\t38.92\t52.61\t57.76\t62.81" in text
    assert "GIFT\t0.9253\t113.95\t0.3907\t0.9869\t47.34\t0.0327" in text
    # prose numbers agree with the tables
    assert "59.55% (4.49% over SFT)" in text
    assert pn.paper_value(1, "qwen", "GIFT", "Average") - pn.paper_value(1, "qwen", "SFT", "Average") == pytest.approx(4.49)


@pytest.mark.parametrize("table", [1, 2, 5])
def test_paper_average_is_mean_of_columns(table):
    wide = pn.paper_wide(table)
    avg = pn.AVERAGE_COLUMN[table]
    cols = [c for c in wide.columns[3:] if c != avg]
    diff = (wide[cols].mean(axis=1) - wide[avg]).abs()
    assert (diff <= 0.02).all(), wide.loc[diff > 0.02, ["backbone", "strategy"]]


# ---------------------------------------------------------------- labels

def test_strategy_labels():
    expected = {"sft": "SFT", "sft_entropy": "SFT + Entropy", "sft_ls": "SFT + Label Smoothing",
                "sft_kd": "SFT + KD", "dft": "DFT", "asft": "ASFT", "psft": "PSFT", "gift-b3": "GIFT (β=3)",
                "gift-b0.5": "GIFT (β=0.5)", "direct_sft": "Direct SFT", "direct_rl": "Direct RL"}
    specs = RunSpecs(SPECS)
    assert {r: specs.label(r) for r in expected} == expected
    assert specs.paper_label("gift-b10") == "GIFT"
    assert specs.method_class("direct_rl") == "Direct SFT/RL" and specs.method_class("psft") == "SFT-then-RL"
    assert specs.label("mystery") == "mystery"  # a run the plan does not know: its id, sorted last
    assert sorted(["gift-b10", "mystery", "sft", "gift-b1", "direct_rl", "psft"], key=specs.sort_key) == \
        ["direct_rl", "sft", "psft", "gift-b1", "gift-b10", "mystery"]
    # labels come from the run table, not from the id: a table that says otherwise wins
    odd = RunSpecs({"gift-b3": {"strategy": "gift", "method": "gift", "beta": 7.0, "label": "GIFT", "order": 7}})
    assert odd.label("gift-b3") == "GIFT (β=7)"
    # an objective of one's own whose label ends in parentheses takes β inside them ("GIFT (clipped) (β=3)" before)
    mine = RunSpecs({"mine-b3": {"strategy": "mine", "method": "mine", "beta": 3.0, "label": "GIFT (clipped)"}})
    assert mine.label("mine-b3") == "GIFT (clipped, β=3)"
    assert T.benchmark_column("gsm8k") == "GSM8K" and T.benchmark_column("tiny_id") == "tiny_id"


# ---------------------------------------------------------------- tables

def _rl_inputs():
    return [
        summ("rl", "qwen", "sft", "tiny_id", 0.40, (0.35, 0.45)),
        summ("rl", "qwen", "gift-b3", "tiny_id", 0.50, (0.45, 0.55)),
        summ("rl", "qwen", "gift-b1", "tiny_id", 0.42, (0.37, 0.47)),
        summ("rl", "qwen", "sft", "gsm8k", 0.60),
        summ("rl", "qwen", "gift-b3", "gsm8k", 0.70),
        summ("rl", "llama", "sft", "tiny_id", 0.30),
        summ("sft", "qwen", "sft", "tiny_id", 0.99),  # pre-RL: not in Table 1
        summ("sft", "qwen", "direct_sft", "tiny_id", 0.20),  # Direct SFT has no RL stage
    ]


def test_table1_rows_columns_and_paper():
    df = table1(_rl_inputs(), paper=True, with_ci=True)
    # the paper's benchmarks first, in its order; the others after them
    assert list(df.columns) == ["backbone", "method_class", "strategy", "run", "GSM8K", "tiny_id",
                                "GSM8K CI95", "tiny_id CI95", "Average", "paper GSM8K", "paper tiny_id",
                                "paper Average"]
    assert list(zip(df.backbone, df.run)) == [("qwen", "direct_sft"), ("qwen", "sft"), ("qwen", "gift-b1"),
                                              ("qwen", "gift-b3"), ("llama", "sft")]
    g3 = df[df.run == "gift-b3"].iloc[0]
    assert g3.strategy == "GIFT (β=3)" and g3.method_class == "SFT-then-RL"
    assert (g3["tiny_id"], g3["GSM8K"], g3["Average"]) == (pytest.approx(50.0), pytest.approx(70.0), pytest.approx(60.0))
    assert g3["tiny_id CI95"] == "[45.00, 55.00]" and g3["GSM8K CI95"] == ""
    assert g3["paper GSM8K"] == 92.06 and g3["paper Average"] == 59.55 and math.isnan(g3["paper tiny_id"])
    g1 = df[df.run == "gift-b1"].iloc[0]
    assert math.isnan(g1["GSM8K"]) and math.isnan(g1["Average"])  # a missing benchmark is never averaged away
    llama = df[df.backbone == "llama"].iloc[0]
    assert llama["paper Average"] == 37.46
    assert df[df.run == "direct_sft"].iloc[0]["method_class"] == "Direct SFT/RL"
    assert "sft_entropy" not in set(df.run)  # methods not run are absent
    only = table1(_rl_inputs(), benchmarks=["tiny_id"], backbones=["llama"])
    assert list(only.columns) == ["backbone", "method_class", "strategy", "run", "tiny_id", "Average"]
    assert set(only.backbone) == {"llama"}


def test_tables_print_backbones_and_benchmarks_in_the_papers_order():
    """Tables 1, 2 and 5 print Qwen2.5-7B first, Tables 3 and 4 Llama-3.1-8B; Table 1's columns are GSM8K, AIME24,
    AIME25, MATH500, HE+, MBPP+ and Table 2's GPQA, MMLU-Redux, ARC-Challenge, MMLU-Pro, whatever the config's
    order. A backbone or benchmark the paper lacks keeps its place after them."""
    config_order = ["gsm8k", "math500", "aime24", "aime25", "humaneval_plus", "mbpp_plus"]
    recs = [summ(stage, bb, run, b, 0.5) for stage in ("rl", "sft") for bb in ("mine", "llama", "qwen")
            for run in ("sft", "gift-b3") for b in config_order]
    one = table1(recs, benchmarks=config_order, backbones=["mine", "llama", "qwen"])
    assert list(one.columns[4:10]) == ["GSM8K", "AIME24", "AIME25", "MATH500", "HE+", "MBPP+"]
    assert list(dict.fromkeys(one.backbone)) == ["qwen", "llama", "mine"]
    ood = ["gpqa", "mmlu_pro", "mmlu_redux", "arc_challenge", "tiny_ood"]
    two = T.table2([summ("rl", "qwen", "sft", b, 0.5) for b in ood], benchmarks=ood)
    assert list(two.columns[4:9]) == ["GPQA", "MMLU-Redux", "ARC-Challenge", "MMLU-Pro", "tiny_ood"]
    three = T.table3(recs, benchmarks=["gsm8k"], backbones=["qwen", "mine", "llama"])
    assert list(dict.fromkeys(three.backbone)) == ["llama", "qwen", "mine"]


def test_report_metric_cells_use_their_own_metric():
    """The paper reports Llama-3.1-8B's AIME as pass@32: those cells (and only those) read pass@32, no CI."""
    recs = [summ("rl", "llama", "sft", "aime24", 0.1, ci=(0.05, 0.15), pass32=0.4),
            summ("rl", "llama", "sft", "gsm8k", 0.7, ci=(0.6, 0.8), pass32=0.99),
            summ("rl", "qwen", "sft", "aime24", 0.2, ci=(0.1, 0.3), pass32=0.5),
            summ("rl", "qwen", "sft", "gsm8k", 0.9, ci=(0.85, 0.95))]
    df = table1(recs, with_ci=True, report_metric={"llama": {"aime24": "pass@32"}})
    llama, qwen = df[df.backbone == "llama"].iloc[0], df[df.backbone == "qwen"].iloc[0]
    assert (llama["AIME24"], llama["GSM8K"]) == (pytest.approx(40.0), pytest.approx(70.0))
    assert llama["AIME24 CI95"] == "" and llama["GSM8K CI95"] == "[60.00, 80.00]"
    assert llama["Average"] == pytest.approx(55.0)
    assert llama["metric"] == "pass@1; AIME24: pass@32" and qwen["metric"] == "pass@1"
    assert (qwen["AIME24"], qwen["AIME24 CI95"]) == (pytest.approx(20.0), "[10.00, 30.00]")
    no_32 = table1([summ("rl", "llama", "sft", "aime24", 0.1)], report_metric={"llama": {"aime24": "pass@32"}})
    assert math.isnan(no_32.iloc[0]["AIME24"])  # a summary without pass@32 is NaN, never its pass@1


def test_table2_and_duplicates():
    recs = [summ("rl", "llama", "gift-b10", "tiny_ood", 0.2), summ("rl", "llama", "sft_kd", "tiny_ood", 0.1)]
    df = table2(recs, paper=True)
    assert list(df.run) == ["sft_kd", "gift-b10"]
    assert df.iloc[1]["paper Average"] == 55.24
    assert math.isnan(df.iloc[0]["paper Average"])  # Table 2 has no SFT + KD row
    with pytest.raises(ValueError, match="two records"):
        table2(recs + [summ("rl", "llama", "sft_kd", "tiny_ood", 0.3)])


def test_table3_passk():
    recs = [
        summ("sft", "qwen", "sft", "tiny_id", 0.4, pass2=0.5, pass4=0.6, pass8=0.7),
        summ("sft", "qwen", "sft", "tiny_ood", 0.2, pass2=0.3, pass4=0.4, pass8=0.5),
        summ("sft", "qwen", "gift-b3", "tiny_id", 0.38, pass2=0.5, pass4=0.65, pass8=0.8),
        summ("sft", "qwen", "gift-b3", "tiny_ood", 0.2, pass2=0.3, pass4=0.45),  # no pass@8
        summ("sft", "qwen", "psft", "tiny_id", 0.1, pass2=0.1, pass4=0.1, pass8=0.1),  # not SFT/GIFT
        summ("rl", "qwen", "sft", "tiny_id", 0.9, pass2=0.9, pass4=0.9, pass8=0.9),  # after RL
    ]
    df = table3(recs, paper=True)
    assert list(df.columns) == ["backbone", "strategy", "run", "benchmarks", "pass@1", "pass@2", "pass@4",
                                "pass@8", "paper pass@1", "paper pass@2", "paper pass@4", "paper pass@8"]
    assert list(df.run) == ["sft", "gift-b3"]
    sft = df.iloc[0]
    assert sft["benchmarks"] == "tiny_id+tiny_ood"
    assert [sft[f"pass@{k}"] for k in (1, 2, 4, 8)] == pytest.approx([30.0, 40.0, 50.0, 60.0])
    assert math.isnan(df.iloc[1]["pass@8"]) and df.iloc[1]["pass@4"] == pytest.approx(55.0)
    assert sft["paper pass@8"] == 59.01 and df.iloc[1]["paper pass@1"] == 38.92


def test_table4_consistency():
    recs = [cons("llama", "sft", "base_sft", 0.9, 10.0, 0.5), cons("llama", "gift-b3", "base_sft", 0.95, 8.0, 0.4),
            cons("llama", "gift-b3", "sft_rl", 0.99, 2.0, 0.1)]
    df = table4(recs, paper=True)
    assert list(df.columns[:9]) == ["backbone", "strategy", "run", "base_sft.cos", "base_sft.l2", "base_sft.kl",
                                    "sft_rl.cos", "sft_rl.l2", "sft_rl.kl"]
    assert list(df.run) == ["sft", "gift-b3"]
    assert math.isnan(df.iloc[0]["sft_rl.kl"]) and df.iloc[1]["sft_rl.l2"] == 2.0
    assert df.iloc[0]["paper base_sft.cos"] == 0.8112 and df.iloc[1]["paper sft_rl.kl"] == 0.2010
    only_stage1 = table4(recs[:2])
    assert [c for c in only_stage1.columns if "." in c] == ["base_sft.cos", "base_sft.l2", "base_sft.kl"]
    with pytest.raises(ValueError, match="stage_pair"):
        table4([cons("llama", "sft", "rl_rl", 1, 0, 0)])


def test_write_table(tmp_path):
    df = table4([cons("llama", "sft", "base_sft", 0.91234567, 10.0, 0.5),
                   cons("llama", "gift-b3", "base_sft", 0.95, 8.0, math.nan)], paper=True)
    paths = T.write_table(df, tmp_path / "tables" / "table4")
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["table4.csv", "table4.md", "table4.tex"]
    back = pd.read_csv(paths["csv"])
    assert list(back.columns) == list(df.columns)
    assert back.iloc[0]["base_sft.cos"] == pytest.approx(0.91234567)  # CSV keeps full precision
    md = paths["md"].read_text().splitlines()
    assert md[0].startswith("| backbone | strategy | run | Base→SFT Cos ↑")
    assert md[1].startswith("| :--- |") and "---:" in md[1]
    assert len(md) == 4 and "| 0.9123 |" in md[2] and "| 10.00 |" in md[2] and "—" in md[3]
    tex = paths["tex"].read_text()
    assert tex.startswith(r"\begin{tabular}{lllrrr") and r"\toprule" in tex and r"\bottomrule" in tex
    assert r"GIFT ($\beta$=3)" in tex and r"Base$\rightarrow$SFT" in tex and r"gift-b3" in tex
    assert r"base\_sft" not in tex  # labels replace the keys in md/tex
    assert re.search(r"\\\\\n\\midrule", tex)
    t1 = table1(_rl_inputs())
    p1 = T.write_table(t1, tmp_path / "t1")
    assert "| 50.00 |" in p1["md"].read_text() and "tiny\\_id" in p1["tex"].read_text()


# ---------------------------------------------------------------- claims

def test_claims_verdicts(tmp_path):
    rl = [summ("rl", "qwen", "sft", "tiny_id", 0.40, (0.37, 0.43)),
          summ("rl", "qwen", "gift-b3", "tiny_id", 0.50, (0.47, 0.53)),  # clear win -> agree
          summ("rl", "qwen", "gift-b1", "tiny_id", 0.41, (0.38, 0.44)),  # within noise -> inconclusive
          summ("rl", "qwen", "gift-b10", "tiny_id", 0.30, (0.27, 0.33))]  # clear loss -> disagree
    c1 = claim_gift_beats_sft(rl)
    assert [(c["run"], c["verdict"]) for c in c1["checks"]] == [
        ("gift-b1", "inconclusive"), ("gift-b3", "agree"), ("gift-b10", "disagree")]
    assert c1["verdict"] == "mixed"
    assert claim_gift_beats_sft(rl[:2])["verdict"] == "agree"
    assert claim_gift_beats_sft([])["verdict"] == "no data"

    pre = [summ("sft", "qwen", "sft", "tiny_id", 0.40, (0.39, 0.41), pass2=0.5, pass4=0.55, pass8=0.59),
           summ("sft", "qwen", "gift-b3", "tiny_id", 0.39, (0.38, 0.40), pass2=0.52, pass4=0.58, pass8=0.63)]
    c2 = claim_passk_advantage_grows(pre)
    assert c2["verdict"] == "agree" and c2["checks"][0]["delta"] == "+5.00"
    flat = [pre[0], summ("sft", "qwen", "gift-b3", "tiny_id", 0.41, (0.40, 0.42), pass2=0.51, pass4=0.56, pass8=0.6)]
    assert claim_passk_advantage_grows(flat)["verdict"] == "inconclusive"

    cs = [cons("qwen", "sft", "base_sft", 0.90, 10.0, 0.50, (0.45, 0.55), {1: (0.6, (0.58, 0.62))}),
          cons("qwen", "gift-b3", "base_sft", 0.95, 8.0, 0.49, (0.44, 0.54), {1: (0.8, (0.78, 0.82))})]
    c3 = claim_gift_more_consistent(cs)
    verdicts = {c["what"]: c["verdict"] for c in c3["checks"]}
    # cos and L2 of one seed have no interval: shown, untested, out of the verdict and of Bonferroni's m (2, not 4)
    assert verdicts == {"Base→SFT cos (↑)": "untested", "Base→SFT l2 (↓)": "untested",
                        "Base→SFT kl (↓)": "inconclusive", "Base→SFT top-1 overlap (↑)": "agree"}
    assert c3["verdict"] == "mixed"
    assert {c["interval"].split("(")[-1] for c in c3["checks"] if c["verdict"] != "untested"} == {"97.50%)"}
    assert claim_gift_more_consistent([{**r, "kl": None, "topk_overlap": {}} for r in cs])["verdict"] == "untested"
    # GIFT and SFT results of different training seeds: nothing to pair (a TypeError from set.intersection before)
    from helpers import run_specs

    apart = [cons("qwen", "sft-s1", "base_sft", 0.9, 10.0, 0.5), cons("qwen", "gift-b3-s2", "base_sft", 0.95, 8.0, 0.49)]
    assert CL.claim_gift_more_consistent(apart, run_specs=run_specs(seeds=(1, 2)))["verdict"] == "no data"

    out = tmp_path / "claims.md"
    claims = write_claims(out, rl_summaries=rl[:2], pre_rl_summaries=pre, consistency=cs)
    text = out.read_text()
    assert [c["verdict"] for c in claims] == ["agree", "agree", "mixed", "no data"]  # no LUFFY/ReLIFT run here
    assert "**untested** = a point estimate with no interval" in text
    assert "## GIFT beats SFT after RL: **agree**" in text
    assert "| qwen | GIFT (β=3) | 1 | tiny_id pass@1 | 50.00 | 40.00 | +10.00 |" in text
    assert CL.verdict(-1.0, None, higher_is_better=False) == "agree"
    assert CL.verdict(float("nan"), 0.1) == "inconclusive"


def test_claim3_with_one_seed_is_paired_over_validation_examples():
    """One seed: GIFT's and SFT's consistency results score the same validation examples, so the interval of their
    difference comes from resampling the examples together (the results' per_example sums). Here every example's
    KL differs by a steady 0.01 while the examples themselves vary widely: the paired interval finds it, the two
    results' own intervals combined do not. Results without per-example sums, or over other examples, fall back."""
    import numpy as np

    from giftlab.stats import ratio_bootstrap_ci

    rng = np.random.default_rng(3)
    n_tokens = rng.integers(5, 40, 60).tolist()
    level = rng.random(60) * 0.2  # how hard each example is, shared by both runs

    def result(run, shift, geometry="hidden"):
        kl = ((level + shift + 0.002 * rng.standard_normal(60)) * n_tokens).tolist()
        cos = ((0.9 - level - shift) * np.asarray(n_tokens)).tolist()
        rec = cons("qwen", run, "base_sft", sum(cos) / sum(n_tokens), 1.0, sum(kl) / sum(n_tokens),
                   ratio_bootstrap_ci(kl, n_tokens, 2000))
        rec.update(geometry=geometry, cos_ci95=list(ratio_bootstrap_ci(cos, n_tokens, 2000)),
                   per_example={"n_tokens": n_tokens, "kl": kl, "hidden_cos": cos})
        return rec

    sft, gift = result("sft", 0.01), result("gift-b3", 0.0)
    checks = {c["what"]: c for c in claim_gift_more_consistent([sft, gift])["checks"]}
    kl, cos = checks["Base→SFT kl (↓)"], checks["Base→SFT cos (↑)"]
    assert kl["verdict"] == cos["verdict"] == "agree"
    assert kl["test"] == "paired bootstrap over 60 validation examples (token means)"
    assert checks["Base→SFT l2 (↓)"]["verdict"] == "untested"  # no interval, no per-example sums here

    unpaired = [{k: v for k, v in r.items() if k != "per_example"} for r in (sft, gift)]
    kl = {c["what"]: c for c in claim_gift_more_consistent(unpaired)["checks"]}["Base→SFT kl (↓)"]
    assert kl["verdict"] == "inconclusive" and kl["test"] == "two 95% intervals combined, sqrt(h₁² + h₂²)"
    for changed in ({"n_tokens": n_tokens[::-1]}, {"examples_sha256": "another tokenisation"}):
        other_examples = {**gift, "per_example": {**gift["per_example"], **changed}}
        kl = {c["what"]: c for c in claim_gift_more_consistent([sft, other_examples])["checks"]}["Base→SFT kl (↓)"]
        assert kl["test"].startswith("two 95% intervals"), changed
    # the last layer's parameters (geometry: parameters) have no per-example cos: one number per checkpoint
    params = [result("sft", 0.01, "parameters"), result("gift-b3", 0.0, "parameters")]
    for r in params:
        del r["cos_ci95"]
    cos = {c["what"]: c for c in claim_gift_more_consistent(params)["checks"]}["Base→SFT cos (↑)"]
    assert cos["verdict"] == "untested"


def _pre_rl_samples(correct_by_problem):
    """{prompt_id: (n, c)} with 8 samples per problem."""
    return {f"p{i}": (8, c) for i, c in enumerate(correct_by_problem)}


def test_claim2_with_one_seed_is_paired_over_problems_from_the_samples():
    """One seed: the growth of GIFT − SFT from pass@1 to pass@8 per problem, bootstrapped over problems (the same
    problems and sampling seeds in both runs), not the pass@1 intervals as a scale. Here GIFT solves once in 8 samples
    40 problems SFT never solves: per problem +1/8 at pass@1, +1 at pass@8, a growth of 0.875 on 40 of 100 problems.
    Wide pass@1 intervals (the heuristic's scale) leave that inconclusive; the paired test decides."""
    from giftlab.stats import pass_at_k

    sft = [0] * 20 + [0] * 40 + [8] * 40
    gift = [0] * 20 + [1] * 40 + [8] * 40
    counts = {("qwen", "sft", "tiny_id"): _pre_rl_samples(sft), ("qwen", "gift-b3", "tiny_id"): _pre_rl_samples(gift)}

    def summary(run, correct):
        values = pass_at_k([(8, c) for c in correct], (1, 2, 4, 8))
        return summ("sft", "qwen", run, "tiny_id", values["pass@1"], (values["pass@1"] - 0.4, values["pass@1"] + 0.4),
                    pass2=values["pass@2"], pass4=values["pass@4"], pass8=values["pass@8"])

    pre = [summary("sft", sft), summary("gift-b3", gift)]
    heuristic = claim_passk_advantage_grows(pre)["checks"][0]
    paired = claim_passk_advantage_grows(pre, samples=counts)["checks"][0]
    assert heuristic["verdict"] == "inconclusive" and "heuristic" in heuristic["test"]
    assert paired["delta"] == heuristic["delta"]  # the same Δ, from the samples
    assert paired["delta"] == "+35.00"  # 0.875 × 40 / 100
    assert paired["test"] == "paired bootstrap over 100 problems" and paired["verdict"] == "agree"


def test_claims_1_and_4_judge_a_cell_at_the_metric_table1_reports_it_in():
    """eval.report_metric (Table 1: Llama's AIME at pass@32): claim 1 compares those cells at pass@32, paired over
    problems from each problem's unbiased pass@32; every other cell stays at pass@1."""
    from giftlab.stats import pass_at_k

    sft = {f"p{i}": (32, c) for i, c in enumerate([0] * 20 + [1] * 10)}
    gift = {f"p{i}": (32, c) for i, c in enumerate([0] * 10 + [1] * 20)}  # 10 more problems solved once in 32

    def summary(run, counts, bench):
        v = pass_at_k(list(counts.values()), (1, 32))
        return summ("rl", "llama", run, bench, v["pass@1"], (v["pass@1"] - 0.01, v["pass@1"] + 0.01),
                    pass32=v["pass@32"])

    recs = [summary(run, c, bench) for bench in ("aime24", "gsm8k") for run, c in (("sft", sft), ("gift-b3", gift))]
    samples = {("llama", run, bench): c for bench in ("aime24", "gsm8k")
               for run, c in (("sft", sft), ("gift-b3", gift))}
    checks = {c["what"]: c for c in claim_gift_beats_sft(recs, samples=samples,
                                                         report_metric={"llama": {"aime24": "pass@32"}})["checks"]}
    assert set(checks) == {"aime24 pass@32", "gsm8k pass@1"}
    at32 = checks["aime24 pass@32"]
    assert (at32["gift"], at32["sft"], at32["delta"]) == ("66.67", "33.33", "+33.33")
    assert at32["test"] == "paired bootstrap over 30 problems" and at32["verdict"] == "agree"
    assert checks["gsm8k pass@1"]["delta"] == "+1.04"  # (20 − 10) / 32 / 30
    assert [c["what"] for c in claim_gift_beats_sft(recs, samples=samples)["checks"]] == ["aime24 pass@1",
                                                                                        "gsm8k pass@1"]


def test_claim2_averages_benchmarks_and_resamples_within_each():
    """Two benchmarks: Δ is the mean of the benchmarks' mean growths (as Table 3's average); the interval is
    stratified, so a benchmark with few problems keeps its weight in every resample."""
    sft_a, gift_a = [1] * 30, [3] * 30
    sft_b, gift_b = [0] * 10, [0] * 10
    counts = {("qwen", "sft", "a"): _pre_rl_samples(sft_a), ("qwen", "gift-b3", "a"): _pre_rl_samples(gift_a),
              ("qwen", "sft", "b"): _pre_rl_samples(sft_b), ("qwen", "gift-b3", "b"): _pre_rl_samples(gift_b)}
    from giftlab.stats import pass_at_k

    pre = []
    for bench, data in (("a", (sft_a, gift_a)), ("b", (sft_b, gift_b))):
        for run, correct in zip(("sft", "gift-b3"), data):
            v = pass_at_k([(8, c) for c in correct], (1, 8))
            pre.append(summ("sft", "qwen", run, bench, v["pass@1"], (0.0, 1.0), pass8=v["pass@8"]))
    check = claim_passk_advantage_grows(pre, ks=(1, 8), samples=counts)["checks"][0]
    # benchmark a: pass@1 1/8 → 3/8 (+0.25), pass@8 1 → 1 (0): growth −0.25 per problem; b: 0. Mean −0.125.
    assert check["delta"] == "-12.50"
    assert check["test"] == "paired bootstrap over 40 problems (2 benchmarks, each resampled)"
    assert check["interval"].startswith("[-12.50, -12.50]") and check["verdict"] == "disagree"


def test_extra_models_table_reads_their_evaluations_and_consistency():
    """config models.extra: one row per checkpoint, pass@1 (%) with its interval, consistency with the base."""
    evals = [{"provenance": {"config": {"stage": "extra", "run": name, "benchmark": bench}}, "pass@1": p,
              "pass@1_ci95": [p - 0.1, p + 0.1]}
             for name, p0 in (("released", 0.5), ("colleague", 0.25)) for bench, p in (("math500", p0), ("gsm8k", p0 / 2))]
    evals.append({"provenance": {"config": {"stage": "rl", "run": "sft", "benchmark": "math500"}}, "pass@1": 0.9})
    agree = [{"stage_pair": "base_extra", "run": "released", "cos": 0.9, "l2": 3.0, "kl": 0.2}]
    df = T.extra_models_table(evals, benchmarks=["math500", "gsm8k"], consistency=agree)
    assert list(df["model"]) == ["released", "colleague"]
    row = df.set_index("model").loc["released"]
    assert row["MATH500"] == pytest.approx(50.0) and row["GSM8K"] == pytest.approx(25.0)
    assert row["Average"] == pytest.approx(37.5) and row["MATH500 CI95"] == "[40.00, 60.00]"
    assert row["base→model cos"] == 0.9 and math.isnan(df.set_index("model").loc["colleague"]["base→model kl"])


def test_a_backbone_of_one_s_own_gets_no_paper_numbers():
    assert pn.paper_backbone("qwen") == pn.paper_backbone("Qwen/Qwen2.5-7B") == "Qwen2.5-7B"
    assert pn.paper_backbone("meta-llama/Llama-3.1-8B") == "Llama-3.1-8B"
    assert pn.paper_backbone("qwen_small") is None and pn.paper_backbone("Qwen/Qwen2.5-1.5B") is None
    assert math.isnan(pn.paper_value(1, "qwen_small", "SFT", "GSM8K"))


def test_a_benchmark_evaluated_on_a_subset_is_noted_under_the_paper_s_numbers(tmp_path):
    checks = {"rows_read": 10, "duplicates_dropped": 0, "official_size": 1319, "size_matches_official": False}
    whole = {**checks, "rows_read": 500, "official_size": 500, "size_matches_official": True}
    summaries = [{"benchmark": "gsm8k", "benchmark_checks": checks}, {"benchmark": "gsm8k", "benchmark_checks": checks},
                 {"benchmark": "math500", "benchmark_checks": whole},
                 {"benchmark": "tiny_id", "benchmark_checks": {**checks, "official_size": None,
                                                               "size_matches_official": None}}]
    notes = T.subset_notes(summaries)
    assert notes == ["GSM8K: 10 of the official set's 1,319 problems were evaluated; the paper's numbers are on the "
                     "whole set."]
    paths = T.write_table(pd.DataFrame({"a": [1.0]}), tmp_path / "t", notes=notes)
    assert paths["md"].read_text().endswith(f"\nNote: {notes[0]}\n")
    assert f"% Note: {notes[0]}" in paths["tex"].read_text()
    assert "Note" not in paths["csv"].read_text()


@pytest.mark.parametrize("value", [7.5, "0.5", -0.1, True])
def test_a_pass_rate_that_is_no_rate_stops_the_table_in_one_line(value):
    """A summary edited by hand printed as a table cell (7.5 -> 750.00, "0.5" -> 50.00) with exit 0 (the
    fault-injection review): tables, claims and Figure 1 refuse a pass@k that is not a number in [0, 1]."""
    from giftlab.reporting.tables import index_records

    rec = {"pass@1": value, "provenance": {"config": {"backbone": "qwen", "run": "sft", "benchmark": "tiny_id"}}}
    with pytest.raises(ValueError, match=rf"^table1: qwen/sft/tiny_id: pass@1 = {re.escape(repr(value))} is not a "
                                         r"rate in \[0, 1\]"):
        index_records([rec], ("backbone", "run", "benchmark"), "table1")
    index_records([{**rec, "pass@1": 0.5, "pass@8": None}], ("backbone", "run", "benchmark"), "table1")


def test_tables_1_and_2_print_each_columns_best_per_backbone_in_bold():
    """The paper's Tables 1 and 2: "The best performance ... is bold": per backbone and column (ties all), in the
    Markdown and LaTeX files; intervals, the paper's numbers and missing cells are never marked."""
    recs = [summ("rl", "qwen", "sft", "gsm8k", 0.60, (0.5, 0.7)), summ("rl", "qwen", "gift-b3", "gsm8k", 0.70),
            summ("rl", "qwen", "sft", "tiny_id", 0.50), summ("rl", "qwen", "gift-b3", "tiny_id", 0.50),
            summ("rl", "llama", "sft", "gsm8k", 0.30)]
    df = T.mark_best(table1(recs, paper=True, with_ci=True))
    md = T.to_markdown(df)
    qwen_sft, qwen_gift, llama_sft = (line for line in md.splitlines()[2:])
    assert "**70.00**" in qwen_gift and "**60.00**" in qwen_gift and "**50.00**" in qwen_gift  # GSM8K, Average, tie
    assert "**50.00**" in qwen_sft and "60.00" in qwen_sft and "**60.00**" not in qwen_sft
    assert "**30.00**" in llama_sft and "**—**" not in md and "**92.06**" not in md and "**[" not in md
    assert r"\textbf{70.00}" in T.to_latex(df) and "**" not in T.to_markdown(table1(recs))  # unmarked: plain


def test_table4_notes_say_the_kl_direction_its_results_record():
    from giftlab.analysis.consistency import KL_DIRECTION

    recs = [{"kl_direction": KL_DIRECTION, "kl": 0.1}, {"kl_direction": KL_DIRECTION, "kl": 0.2}, {"kl": 0.3}]
    assert T.kl_notes(recs) == [f"KL is {KL_DIRECTION}. The paper does not state its direction; the reverse is "
                                "kl_reverse in each results/consistency JSON."]
    assert T.kl_notes([{"kl": 0.3}]) == []
