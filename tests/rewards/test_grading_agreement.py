"""benchmarks/grading_agreement.py: its pairs, graders and agreement counts on a handful of golds,
and the fixture of real gold answers it reads."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys

import pytest

from helpers import REPO

FIXTURE = REPO / "tests" / "fixtures" / "gold_answers" / "math500_answers.jsonl"


@pytest.fixture(scope="module")
def ga():
    spec = importlib.util.spec_from_file_location("grading_agreement",
                                                  REPO / "benchmarks" / "grading_agreement.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks its module up there
    spec.loader.exec_module(mod)
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return mod


def test_fixture_holds_math500_gold_answers():
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    assert len(rows) == 500 and len({r["unique_id"] for r in rows}) == 500
    assert all(set(r) == {"unique_id", "answer"} and r["answer"] for r in rows)
    assert rows[0] == {"unique_id": "test/precalculus/807.json",
                       "answer": r"\left( 3, \frac{\pi}{2} \right)"}
    assert "openai/prm800k" in (FIXTURE.parent / "README.md").read_text()


def test_pairs_from_golds(ga):
    pairs = ga.make_pairs([("a", "12"), ("b", r"\frac{1}{4}"), ("c", "x = 5"), ("d", "5")])
    kinds = {(p.uid, p.kind): p for p in pairs}
    assert kinds[("a", "unit_words")].response == r"\boxed{\text{12 apples}}"
    assert kinds[("a", "off_by_one")].response == r"\boxed{13}" and not kinds[("a", "off_by_one")].expected
    assert kinds[("b", "frac_to_decimal")].response == r"\boxed{0.250000}"
    assert kinds[("b", "zero_vs_tiny_dec")].gold == "0.00000000025"
    assert ("c", "other_gold") not in kinds  # "x = 5" against gold "5" is the same answer
    assert all(p.expected == (p.kind in {"identity", "boxed_text", "dfrac", "trailing_zero",
                                         "unit_words", "decimal_to_frac", "frac_to_decimal"})
               for p in pairs)


def test_agreement_on_a_handful_of_real_golds(ga, capsys):
    golds = ga.load_golds(FIXTURE, 6)
    assert [g for _, g in golds][2:4] == [r"\frac{14}{3}", "9"]
    pairs = ga.make_pairs(golds)
    graders = ga.make_graders()
    verdicts = ga.run(pairs, {k: graders[k] for k in ("giftlab", "math_verify", "omi")})
    rows = ga.summarize(pairs, verdicts)
    total = rows["TOTAL"]
    assert total["n"] == len(pairs) == sum(r["n"] for k, r in rows.items() if k != "TOTAL")
    assert all(0 <= total["agree"][g] <= total["n"] for g in ("math_verify", "omi"))
    assert total["agree"]["giftlab"] == total["n"]
    # known-right pairs are graded right by this grader
    by = {(p.uid, p.kind): v["giftlab"] for p, v in zip(pairs, verdicts)}
    assert all(by[(uid, k)] for uid, _ in golds for k in ("identity", "boxed_text"))
    assert by[("test/algebra/2584.json", "frac_to_decimal")] is True       # 4.666667 == 14/3
    assert by[("test/number_theory/572.json", "unit_words")] is True       # \text{9 apples} == 9
    assert by[("test/number_theory/572.json", "off_by_one")] is False
    assert by[("test/number_theory/572.json", "x100")] is True             # the paper's percent rule
    # the absolute floors: Math-Verify (6 decimals) and upstream OMI (1e-7) accept, giftlab does not
    tex = [(p, v) for p, v in zip(pairs, verdicts) if p.kind == "zero_vs_tiny_tex"]
    dec = [(p, v) for p, v in zip(pairs, verdicts) if p.kind == "zero_vs_tiny_dec"]
    assert tex and all(v["math_verify"] and not v["giftlab"] for _, v in tex)
    assert any(v["omi"] for _, v in dec) and not any(v["giftlab"] for _, v in dec)
    ga.print_report(pairs, verdicts, show=1)
    out = capsys.readouterr().out
    assert "agreement giftlab vs math_verify" in out and "disagreements giftlab vs omi" in out
