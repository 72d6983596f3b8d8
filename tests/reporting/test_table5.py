"""Table 5 (MT-Bench) from judged scores: the paper's layout and numbers beside, unrated turns shown, never a 0."""

from __future__ import annotations

import math

import pytest

from giftlab.reporting import paper_numbers as pn
from giftlab.reporting import tables as T
from helpers import run_specs

SPECS = run_specs(betas=(3, 10))


def scores(backbone, run, categories, total, unrated=0, ci=(4.0, 6.0), truncated=0):
    return {"judge": "rubric", "total": {"score": total, "n": 12 - unrated, "unrated": unrated, "ci95": list(ci),
                                         **({} if truncated is None else {"truncated": truncated})},
            "categories": {c: {"score": v, "n": 4, "unrated": 0} for c, v in categories.items()},
            "provenance": {"config": {"backbone": backbone, "run": run, "judge": {"kind": "rubric"}}}}


def test_rows_columns_and_the_papers_numbers_beside():
    records = [scores("qwen", "gift-b3", {"extraction": 6.0, "math": 5.0, "reasoning": 4.0}, 5.0),
               scores("qwen", "sft", {"extraction": 3.0, "math": 2.0, "reasoning": 1.0}, 2.0, unrated=2, truncated=5),
               scores("llama", "gift-b10", {"math": 7.0, "reasoning": None, "extraction": 9.0}, 8.0, ci=(math.nan,) * 2,
                      truncated=None)]  # scores written before the count
    df = T.table5(records, paper=True, backbones=["qwen", "llama"], run_specs=SPECS)
    # the paper's column order and names (extraction -> Extract), only the categories present
    assert [c for c in df.columns if not c.startswith("paper ")] == [
        "backbone", "method_class", "strategy", "run", "judge", "Total", "Total CI95", "Reasoning", "Math", "Extract",
        "judged", "unrated", "truncated"]
    assert list(df["run"]) == ["sft", "gift-b3", "gift-b10"]            # backbones as asked, registry order within
    gift = df[df["run"] == "gift-b3"].iloc[0]
    assert (gift["strategy"], gift["method_class"], gift["Total"], gift["Extract"]) == \
        ("GIFT (β=3)", "SFT-then-RL", 5.0, 6.0)
    assert gift["Total CI95"] == "[4.00, 6.00]"
    # every GIFT β maps to the paper's GIFT row; Qwen2.5-7B's is Total 6.34, Extract 6.5
    assert gift["paper Total"] == pn.paper_value(5, "Qwen2.5-7B", "GIFT", "Total") == 6.34
    assert gift["paper Extract"] == 6.5
    assert df[df["run"] == "sft"].iloc[0]["unrated"] == 2
    llama = df[df["run"] == "gift-b10"].iloc[0]
    assert math.isnan(llama["Reasoning"]) and llama["Total CI95"] == "" and llama["paper Math"] == 4.1
    md = T.to_markdown(df)
    assert "| 12 | 0 | 0 |" in md and "| 10 | 2 | 5 |" in md   # judged, unrated, truncated: counts, as integers
    assert "| — |" in md                                # no rating: shown as missing, never 0


def test_a_category_the_paper_lacks_keeps_its_name_after_the_papers():
    df = T.table5([scores("qwen", "sft", {"trivia": 3.0, "math": 2.0}, 2.5)], paper=True, run_specs=SPECS)
    assert [c for c in df.columns if c in ("Math", "trivia")] == ["Math", "trivia"]
    assert math.isnan(df.iloc[0]["paper trivia"])


def test_two_records_for_one_model_are_refused():
    rec = scores("qwen", "sft", {"math": 2.0}, 2.0)
    with pytest.raises(ValueError, match="two records"):
        T.table5([rec, rec], run_specs=SPECS)
