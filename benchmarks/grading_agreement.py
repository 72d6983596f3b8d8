"""Differential check of giftlab's math grader against Math-Verify alone and upstream OpenMathInstruct.

    .venv/bin/python benchmarks/grading_agreement.py [--n 500] [--show 3] [--graders giftlab,math_verify]

Pairs are built from REAL gold answers (MATH-500, tests/fixtures/gold_answers/math500_answers.jsonl):
each gold against equivalent rewritings (the gold itself, a response sentence ending in its
``\\boxed{}``, ``\\frac`` -> ``\\dfrac``, a decimal for a fraction and a fraction for a decimal, an
integer with a trailing ``.0`` or with unit words) and against non-equivalent perturbations (another
problem's gold, n+1, a relative error of 1e-3, a sign flip, zero against the gold scaled by 1e-9
(as ``v\\times 10^{-9}`` and as a decimal), and the gold times 100). Every grader sees the same
response text and extracts the answer its own way:

* ``giftlab``: :func:`giftlab.rewards.grade` (OMI re-implementation, then Math-Verify);
* ``math_verify``: ``math_verify.verify(gold=parse("\\\\boxed{$gold$}"), target=parse(response))``;
* ``omi``: upstream ``math_equal(extract_answer(response), gold)`` vendored in
  ``benchmarks/_upstream_omi.py`` (NeMo-Skills fc33865e). Its antlr-version check is disabled and
  sympy's ``parse_latex`` cannot run beside dvc's antlr 4.9.3, so its symbolic stage only reads
  what ``parse_expr`` reads;
* ``omi_l2s``: the same upstream code with ``parse_latex`` replaced by ``latex2sympy2_extended``
  (the LaTeX parser giftlab's re-implementation uses): what upstream does when its parser works.

Prints, per kind of pair and in total, how often each grader says "equal", the agreement rate of
giftlab with each other grader and with the label, then the disagreements. Expected disagreements:
the percent rule (``x100`` pairs; GIFT's grader accepts 0.5 == 50), the absolute floors giftlab
removed (``zero_vs_tiny_*``), unit words (``unit_words``); and the relative 1e-4 that giftlab and OMI
share accepts n+1 for integers from 10,000 up (``off_by_one``). Single process, in-process grading
(trusted inputs): about 30 s for the 500 golds on one core.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import re
import sys
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "tests" / "fixtures" / "gold_answers" / "math500_answers.jsonl"
GRADERS = ("giftlab", "math_verify", "omi", "omi_l2s")


@dataclass(frozen=True)
class Pair:
    kind: str
    uid: str
    gold: str
    response: str
    expected: bool  # mathematically equivalent?


def load_golds(path: Path = FIXTURE, n: int | None = None) -> list[tuple[str, str]]:
    """``(unique_id, answer)`` rows of the fixture, the first ``n`` of them."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                rows.append((r["unique_id"], r["answer"]))
    return rows[:n] if n else rows


_INT = re.compile(r"^-?\d+$")
_DEC = re.compile(r"^-?\d*\.\d+$")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")
_SLASH = re.compile(r"^(-?\d+)/(\d+)$")


def as_fraction(gold: str) -> Fraction | None:
    """The exact value of a gold that is a plain integer, decimal or simple fraction, else None."""
    g = gold.strip()
    try:
        if _INT.match(g) or _DEC.match(g):
            return Fraction(g)
        if m := _FRAC.match(g):
            v = Fraction(int(m.group(2)), int(m.group(3)))
            return -v if m.group(1) else v
        if m := _SLASH.match(g):
            return Fraction(int(m.group(1)), int(m.group(2)))
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _num(v: Fraction | float) -> str:
    """A short decimal string (at most 10 significant digits, no exponent)."""
    s = f"{float(v):.10f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


_ASSIGNMENT = re.compile(r"^\s*[A-Za-z]\s*=\s*")


def _bare(ans: str) -> str:
    """``ans`` without spaces and without a leading ``x =``."""
    return _ASSIGNMENT.sub("", ans).replace(" ", "")


def _box(ans: str) -> str:
    return f"\\boxed{{{ans}}}"


def make_pairs(golds: list[tuple[str, str]]) -> list[Pair]:
    pairs: list[Pair] = []
    for i, (uid, gold) in enumerate(golds):
        def add(kind, response, expected):
            pairs.append(Pair(kind, uid, gold, response, expected))

        add("identity", _box(gold), True)
        add("boxed_text", f"Putting it together, the answer is $\\boxed{{{gold}}}$.", True)
        if "\\frac" in gold:
            add("dfrac", _box(gold.replace("\\frac", "\\dfrac")), True)
        v = as_fraction(gold)
        if v is not None:
            if v.denominator == 1:
                n = int(v)
                add("trailing_zero", _box(f"{n}.0"), True)
                add("unit_words", _box(f"\\text{{{n} apples}}"), True)
                add("off_by_one", _box(str(n + 1)), False)
            elif "." in gold:
                add("decimal_to_frac", _box(f"\\frac{{{v.numerator}}}{{{v.denominator}}}"), True)
            else:  # a fraction: its decimal to 6 places is within 1e-4 (and Math-Verify's 6 decimals)
                add("frac_to_decimal", _box(f"{float(v):.6f}"), True)
            if v != 0:
                add("rel_1e-3", _box(_num(v * Fraction(1001, 1000))), False)
                add("sign_flip", _box(_num(-v)), False)
                add("x100", _box(_num(v * 100)), False)
                # zero against the gold scaled by 1e-9: Math-Verify's 6-decimal rounding and OMI's
                # 1e-7 integer test are absolute floors that call these equal
                tiny = f"{float(v) * 1e-9:.20f}".rstrip("0")
                pairs.append(Pair("zero_vs_tiny_tex", uid, f"{_num(v)}\\times 10^{{-9}}", _box("0.0"), False))
                pairs.append(Pair("zero_vs_tiny_dec", uid, tiny, _box("0"), False))
        # another problem's gold, unless it is the same answer (same text, same value, or
        # "x = <gold>", which Math-Verify rightly reads as the gold)
        other = golds[(i + 1) % len(golds)][1]
        if _bare(other) != _bare(gold) and (v is None or as_fraction(_bare(other)) != v):
            add("other_gold", _box(other), False)
    return pairs


# ------------------------------------------------------------------------------------- graders


def _load_upstream():
    spec = importlib.util.spec_from_file_location("_upstream_omi", HERE / "_upstream_omi.py")
    mod = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # upstream's regexes have invalid escapes ("\d"): kept verbatim
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        spec.loader.exec_module(mod)
    # antlr 4.11.0 is required by upstream's check, 4.9.3 is installed (dvc's pin): skip the check
    mod._check_antlr_version = lambda: None
    return mod


@contextlib.contextmanager
def _latex_parser(parse):
    """Temporarily make ``sympy.parsing.latex.parse_latex`` (imported by upstream per call) ``parse``."""
    import sympy.parsing.latex as spl

    old = spl.parse_latex
    spl.parse_latex = parse
    try:
        yield
    finally:
        spl.parse_latex = old


def make_graders():
    """``{name: fn(gold, response) -> bool}``; every failure inside a grader counts as False."""
    import math_verify

    from giftlab.rewards import grade

    upstream = _load_upstream()
    from latex2sympy2_extended import latex2sympy

    def giftlab_fn(gold, response):
        return grade(response, gold).correct

    def math_verify_fn(gold, response):
        return bool(math_verify.verify(gold=math_verify.parse("\\boxed{$" + gold + "$}"),
                                       target=math_verify.parse(response)))

    def omi_fn(gold, response):
        return bool(upstream.math_equal(upstream.extract_answer(response), gold))

    def omi_l2s_fn(gold, response):
        with _latex_parser(latex2sympy):
            return bool(upstream.math_equal(upstream.extract_answer(response), gold))

    return {"giftlab": giftlab_fn, "math_verify": math_verify_fn, "omi": omi_fn, "omi_l2s": omi_l2s_fn}


def run(pairs: list[Pair], graders: dict) -> list[dict[str, bool]]:
    """One ``{grader: verdict}`` per pair (an exception is a False verdict, as in GIFT)."""
    out = []
    for p in pairs:
        verdicts = {}
        for name, fn in graders.items():
            try:
                verdicts[name] = bool(fn(p.gold, p.response))
            except Exception:  # noqa: BLE001 - a crash is "not equal" for every grader
                verdicts[name] = False
        out.append(verdicts)
    return out


def summarize(pairs: list[Pair], verdicts: list[dict[str, bool]], ref: str = "giftlab") -> dict:
    """Counts per kind and in total: ``n``, ``accepted[g]``, ``agree[g]`` (with ``ref``), ``right[g]``
    (verdict == label)."""
    names = list(verdicts[0]) if verdicts else []
    rows: dict[str, dict] = {}
    for p, v in zip(pairs, verdicts, strict=True):
        for key in (p.kind, "TOTAL"):
            r = rows.setdefault(key, {"n": 0, "expected": p.expected if key != "TOTAL" else None,
                                      "accepted": dict.fromkeys(names, 0),
                                      "agree": dict.fromkeys(names, 0), "right": dict.fromkeys(names, 0)})
            r["n"] += 1
            for g in names:
                r["accepted"][g] += v[g]
                r["agree"][g] += v[g] == v[ref]
                r["right"][g] += v[g] == p.expected
    return rows


def disagreements(pairs, verdicts, ref: str = "giftlab", other: str = "math_verify"):
    return [(p, v) for p, v in zip(pairs, verdicts, strict=True) if v[ref] != v[other]]


def _rate(k, n):
    return f"{k}/{n} ({100.0 * k / n:.1f}%)" if n else "-"


def print_report(pairs, verdicts, seconds: dict | None = None, show: int = 3) -> None:
    rows = summarize(pairs, verdicts)
    names = list(verdicts[0])
    others = [g for g in names if g != "giftlab"]
    print(f"{len(pairs)} pairs from {len({p.uid for p in pairs})} gold answers")
    head = f"{'kind':<16}{'label':>6}{'n':>6} " + "".join(f"{'eq:' + g:>15}" for g in names)
    head += "".join(f"{'agree:' + g:>18}" for g in others)
    print(head)
    for kind, r in sorted(rows.items(), key=lambda kv: (kv[0] == "TOTAL", kv[0])):
        label = "-" if r["expected"] is None else ("eq" if r["expected"] else "ne")
        line = f"{kind:<16}{label:>6}{r['n']:>6} " + "".join(f"{r['accepted'][g]:>15}" for g in names)
        line += "".join(f"{100.0 * r['agree'][g] / r['n']:>17.1f}%" for g in others)
        print(line)
    total = rows["TOTAL"]
    print()
    for g in others:
        print(f"agreement giftlab vs {g:<12} {_rate(total['agree'][g], total['n'])}")
    for g in names:
        print(f"matches the label  {g:<12} {_rate(total['right'][g], total['n'])}")
    if seconds:
        print("seconds: " + ", ".join(f"{g} {s:.1f}" for g, s in seconds.items()))
    for other in others:
        dis = disagreements(pairs, verdicts, "giftlab", other)
        by_kind: dict[str, list] = {}
        for p, v in dis:
            by_kind.setdefault(p.kind, []).append((p, v))
        print(f"\ndisagreements giftlab vs {other}: {len(dis)} "
              f"({', '.join(f'{k} {len(x)}' for k, x in sorted(by_kind.items()))}); "
              f"up to {show} per kind:")
        for kind, items in sorted(by_kind.items()):
            for p, v in items[:show]:
                print(f"  [{kind}] {p.uid}  gold={p.gold!r}  response={p.response!r}  "
                      f"giftlab={v['giftlab']} {other}={v[other]} label={p.expected}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="use the first N golds (default: all)")
    ap.add_argument("--fixture", type=Path, default=FIXTURE)
    ap.add_argument("--show", type=int, default=3, help="disagreements listed per kind and grader")
    ap.add_argument("--graders", default=",".join(GRADERS), help=f"comma list out of {GRADERS}")
    args = ap.parse_args(argv)
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # per-item parse warnings
    all_graders = make_graders()
    wanted = [g.strip() for g in args.graders.split(",") if g.strip()]
    unknown = [g for g in wanted if g not in all_graders]
    if unknown or "giftlab" not in wanted:
        sys.exit(f"--graders: need giftlab plus any of {', '.join(GRADERS)}; got {args.graders!r}")
    pairs = make_pairs(load_golds(args.fixture, args.n))
    verdicts: list[dict[str, bool]] = [{} for _ in pairs]
    seconds = {}
    for g in wanted:  # one grader at a time, so each one's time is its own
        t0 = time.perf_counter()
        for v, res in zip(verdicts, run(pairs, {g: all_graders[g]}), strict=True):
            v.update(res)
        seconds[g] = time.perf_counter() - t0
    print_report(pairs, verdicts, seconds, args.show)


if __name__ == "__main__":
    main()
