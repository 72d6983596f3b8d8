"""Paper Tables 1–5 built from small result JSONs (never checkpoints), and one writer.

Inputs are the dicts the pipeline writes:

* evaluation summaries (``results/eval/<stage>/<backbone>/<run>/<benchmark>.summary.json``): read
  ``provenance.config.{stage, backbone, run, benchmark}``, ``pass@<k>`` (fractions in [0, 1]) and
  ``pass@1_ci95`` ([lo, hi], optional);
* MT-Bench scores (``results/mtbench/scores/<backbone>/<run>.json``, Table 5): read
  ``provenance.config.{backbone, run}``, ``judge``, ``total`` and ``categories`` ({score, n, unrated});
* consistency results (``results/consistency/<backbone>/<run>/<stage_pair>.json``): read
  ``provenance.config.{backbone, run, stage_pair}`` (top-level keys of the same names as a fallback)
  and ``cos``, ``l2``, ``kl``.

Rows exist only for runs present in the inputs (a method that was not run is absent, never filled
in); columns are the benchmarks asked for (``benchmarks``: one without results is an empty column, and so is
every Average that needs it), else those present in the inputs (paper names such as ``GSM8K`` when the
benchmark is one of the paper's, the raw name such as ``tiny_id`` otherwise). Pass rates are shown
in percent, like the paper. ``paper=True`` adds ``paper <column>`` columns with the paper's
reported number for the same backbone (matched by name: "qwen" → Qwen2.5-7B, "llama" →
Llama-3.1-8B) and strategy; every GIFT β maps to the paper's single GIFT row, and a cell the paper
does not report (or a tiny benchmark) is NaN. ``paper Average`` is always the paper's own Average.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from giftlab.grid import COMPARED_METHODS, STAGE_PAIRS
from giftlab.io import write_text_atomic
from giftlab.reporting import paper_numbers as pn
from giftlab.reporting.runs import RunSpecs
from giftlab.reporting.seeds import collapse_seeds

CONSISTENCY_METRICS = {"cos": "Cos ↑", "l2": "L2 ↓", "kl": "KL ↓"}
TURN_COUNTS = ("judged", "unrated", "truncated")  # Table 5's counts of turns (summed over seeds, never bold)


def benchmark_column(benchmark: str) -> str:
    """Table column for a benchmark: the paper's name when it is one of the paper's, else as is."""
    return pn.paper_column(benchmark) or benchmark


# ---------------------------------------------------------------- record access

def job_field(record: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``record.provenance.config[key]``, else ``record[key]``, else ``default``."""
    job = (record.get("provenance") or {}).get("config") or {}
    if key in job and job[key] is not None:
        return job[key]
    return record.get(key, default)


def _need(record: Mapping[str, Any], key: str, what: str) -> Any:
    value = job_field(record, key)
    if value is None:
        raise ValueError(f"{what}: record has no '{key}' (in provenance.config or at top level)")
    return value


def _ci(record: Mapping[str, Any], key: str = "pass@1_ci95") -> tuple[float, float] | None:
    ci = record.get(key)
    if not ci or len(ci) != 2 or any(c is None or (isinstance(c, float) and math.isnan(c)) for c in ci):
        return None
    return float(ci[0]), float(ci[1])


_RATE = re.compile(r"pass@\d+")


def check_rates(record: Mapping[str, Any], where: str) -> None:
    """Every ``pass@k`` of an evaluation's record is a rate: a number in [0, 1], or null where not computed (a
    summary edited by hand, "0.5" or 7.5, printed as 50.00 or 750.00 before)."""
    for key, value in record.items():
        if _RATE.fullmatch(key) and value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
            raise ValueError(f"{where}: {key} = {value!r} is not a rate in [0, 1] (the summary was edited or "
                             "damaged: rebuild it with `snakemake --force <its summary.json>`)")


def index_records(records: Iterable[Mapping[str, Any]], keys: Sequence[str], what: str
                  ) -> dict[tuple, Mapping[str, Any]]:
    """The records by their job fields ``keys`` (a missing field, two records for one key or a ``pass@k`` that is
    no rate: one line naming ``what`` and the record)."""
    out: dict[tuple, Mapping[str, Any]] = {}
    for rec in records:
        key = tuple(_need(rec, k, what) for k in keys)
        if key in out:
            raise ValueError(f"{what}: two records for {dict(zip(keys, key))}")
        check_rates(rec, f"{what}: {'/'.join(map(str, key))}")
        out[key] = rec
    return out


def _backbone_order(backbones: Iterable[str], wanted: Sequence[str] | None, table: int | None) -> list[str]:
    """The backbones present (those ``wanted``, in its order), the paper's two in the order paper table ``table``
    prints them (Tables 1, 2, 5: Qwen first; 3, 4: Llama first)."""
    present = list(dict.fromkeys(backbones))
    if wanted is not None:
        present = [b for b in wanted if b in present]
    if table is None:
        return present
    return pn.in_paper_order(present, pn.paper_order(table, "backbone"), pn.as_paper_backbone)


# ---------------------------------------------------------------- Tables 1 and 2

def _is_post_rl(record: Mapping[str, Any], specs: RunSpecs) -> bool:
    stage, run = job_field(record, "stage"), job_field(record, "run")
    return stage == "rl" or (specs.strategy(run) == "direct_sft" and stage in ("sft", "rl"))


def benchmark_table(summaries: Iterable[Mapping[str, Any]], paper_table: int | None = None,
                    benchmarks: Sequence[str] | None = None, metric: str = "pass@1",
                    paper: bool = False, with_ci: bool = False,
                    backbones: Sequence[str] | None = None,
                    report_metric: Mapping[str, Mapping[str, str]] | None = None,
                    run_specs: Mapping[str, Mapping[str, Any]] | RunSpecs | None = None) -> pd.DataFrame:
    """Post-RL ``metric`` (in %) per (backbone, run) × benchmark, plus the row ``Average``.

    Uses the summaries at stage ``rl`` (and ``direct_sft`` at stage ``sft``: Direct SFT has no RL
    stage). ``benchmarks`` restricts and orders the columns (default: as they first appear; the paper's own in
    paper table ``paper_table``'s order, before the others); a requested benchmark without results is an empty
    column. Backbones: those of ``backbones``, the paper's two in that table's order. Average = mean over the
    benchmark columns, NaN when the row misses one. ``with_ci`` adds ``<column> CI95`` ("[lo, hi]" in %) from
    ``pass@1_ci95`` (only for pass@1 cells).
    ``report_metric`` {backbone: {benchmark: "pass@k"}} reports those cells with another metric (the paper:
    Llama-3.1-8B's AIME as pass@32); the column ``metric`` then says which cells. ``run_specs``: the plan's run
    table (labels, classes, row order; :class:`giftlab.reporting.runs.RunSpecs`).
    """
    specs = RunSpecs(run_specs)
    recs = [r for r in summaries if _is_post_rl(r, specs)]
    if benchmarks is not None:
        recs = [r for r in recs if job_field(r, "benchmark") in set(benchmarks)]
    idx = index_records(recs, ("backbone", "run", "benchmark"), "benchmark table")
    # a requested benchmark without any result keeps its column, empty: the row's Average is then missing too,
    # never the mean of the other benchmarks printed beside the paper's Average over all of them
    benches = list(benchmarks) if benchmarks is not None else list(dict.fromkeys(k[2] for k in idx))
    if paper_table is not None:  # the paper's benchmarks in its column order, others after them
        benches = pn.in_paper_order(benches, pn.paper_order(paper_table, "benchmark"), pn.paper_column)
    cols = [benchmark_column(b) for b in benches]
    if len(set(cols)) != len(cols):
        raise ValueError(f"benchmark table: benchmarks {benches} map to duplicate columns {cols}")
    report_metric = report_metric or {}
    rows = []
    for bb in _backbone_order((k[0] for k in idx), backbones, paper_table):
        cell_metric = {b: (report_metric.get(bb) or {}).get(b, metric) for b in benches}
        for run in sorted({k[1] for k in idx if k[0] == bb}, key=specs.sort_key):
            row: dict[str, Any] = {"backbone": bb, "method_class": specs.method_class(run),
                                   "strategy": specs.label(run), "run": run}
            if report_metric:
                other = [f"{c}: {cell_metric[b]}" for b, c in zip(benches, cols) if cell_metric[b] != metric]
                row["metric"] = "; ".join([metric, *other])
            for bench, col in zip(benches, cols):
                rec = idx.get((bb, run, bench))
                value = rec.get(cell_metric[bench]) if rec is not None else None
                row[col] = math.nan if value is None else 100.0 * float(value)
                if with_ci:
                    ci = _ci(rec) if rec is not None and cell_metric[bench] == "pass@1" else None
                    row[f"{col} CI95"] = "" if ci is None else f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"
            row["Average"] = (sum(row[c] for c in cols) / len(cols)) if cols else math.nan
            if paper and paper_table is not None:
                for col in [*cols, "Average"]:
                    row[f"paper {col}"] = pn.paper_value(paper_table, bb, specs.paper_label(run), col)
            rows.append(row)
    columns = ["backbone", "method_class", "strategy", "run", *(["metric"] if report_metric else []), *cols]
    if with_ci:
        columns += [f"{c} CI95" for c in cols]
    columns.append("Average")
    if paper and paper_table is not None:
        columns += [f"paper {c}" for c in [*cols, "Average"]]
    df = pd.DataFrame(rows, columns=columns)
    df.attrs["digits"] = 2
    return df


def table1(summaries: Iterable[Mapping[str, Any]], benchmarks: Sequence[str] | None = None,
           paper: bool = False, with_ci: bool = False, backbones: Sequence[str] | None = None,
           report_metric: Mapping[str, Mapping[str, str]] | None = None, run_specs=None) -> pd.DataFrame:
    """Table 1: post-RL pass@1 (%) on the reasoning benchmarks, per initialisation strategy."""
    return benchmark_table(summaries, 1, benchmarks, "pass@1", paper, with_ci, backbones, report_metric, run_specs)


def table2(summaries: Iterable[Mapping[str, Any]], benchmarks: Sequence[str] | None = None,
           paper: bool = False, with_ci: bool = False, backbones: Sequence[str] | None = None,
           report_metric: Mapping[str, Mapping[str, str]] | None = None, run_specs=None) -> pd.DataFrame:
    """Table 2: post-RL pass@1 (%) on the out-of-distribution benchmarks (pass those summaries)."""
    return benchmark_table(summaries, 2, benchmarks, "pass@1", paper, with_ci, backbones, report_metric, run_specs)


# ---------------------------------------------------------------- checkpoints the pipeline did not train

def extra_models_table(summaries: Iterable[Mapping[str, Any]], benchmarks: Sequence[str] | None = None,
                       consistency: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Checkpoints this pipeline did not train (config ``models.extra``): pass@1 (%) per model × benchmark with
    its 95 % interval, the Average over the benchmark columns, and, where the model names a backbone, the
    consistency with that backbone's base (cos, L2, KL of ``base_extra``)."""
    recs = [r for r in summaries if job_field(r, "stage") == "extra"]
    if benchmarks is not None:
        recs = [r for r in recs if job_field(r, "benchmark") in set(benchmarks)]
    idx = index_records(recs, ("run", "benchmark"), "extra models table")
    benches = list(benchmarks) if benchmarks is not None else list(dict.fromkeys(k[1] for k in idx))
    cols = [benchmark_column(b) for b in benches]
    agree = {job_field(c, "run"): c for c in consistency}
    rows = []
    for model in dict.fromkeys(k[0] for k in idx):
        row: dict[str, Any] = {"model": model}
        for bench, col in zip(benches, cols):
            rec = idx.get((model, bench))
            row[col] = math.nan if rec is None else 100.0 * float(rec["pass@1"])
            ci = _ci(rec) if rec is not None else None
            row[f"{col} CI95"] = "" if ci is None else f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"
        row["Average"] = sum(row[c] for c in cols) / len(cols) if cols else math.nan
        for metric in ("cos", "l2", "kl"):
            row[f"base→model {metric}"] = (agree[model].get(metric, math.nan) if model in agree else math.nan)
        rows.append(row)
    columns = ["model", *cols, *[f"{c} CI95" for c in cols], "Average",
               *[f"base→model {m}" for m in ("cos", "l2", "kl")]]
    df = pd.DataFrame(rows, columns=columns)
    df.attrs["digits"] = 2
    return df


# ---------------------------------------------------------------- Table 3

def table3(summaries: Iterable[Mapping[str, Any]], ks: Sequence[int] = (1, 2, 4, 8),
           methods: Sequence[str] = COMPARED_METHODS, stage: str = "sft",
           benchmarks: Sequence[str] | None = None, paper: bool = False,
           backbones: Sequence[str] | None = None, run_specs=None) -> pd.DataFrame:
    """Table 3: pass@k (%) before RL (stage ``sft``), averaged over the same benchmarks in every row.

    One row per (backbone, run) whose method is in ``methods``; ``pass@<k>`` is the mean over the
    ``benchmarks`` (default: every benchmark the table holds), NaN when the row lacks one of them (the column
    ``benchmarks`` says which it has) or a summary lacks that k (n_samples < k). ``paper`` adds
    ``paper pass@<k>``.
    """
    specs = RunSpecs(run_specs)
    recs = [r for r in summaries if job_field(r, "stage") == stage
            and specs.strategy(_need(r, "run", "table3")) in set(methods)]
    if benchmarks is not None:
        recs = [r for r in recs if job_field(r, "benchmark") in set(benchmarks)]
    idx = index_records(recs, ("backbone", "run", "benchmark"), "table3")
    # every row averages the same benchmarks (the paper's: the math ones); a row missing one has no mean
    wanted = set(benchmarks) if benchmarks is not None else {k[2] for k in idx}
    cols = [f"pass@{int(k)}" for k in ks]
    rows = []
    for bb in _backbone_order((k[0] for k in idx), backbones, 3):
        for run in sorted({k[1] for k in idx if k[0] == bb}, key=specs.sort_key):
            mine = [(k[2], rec) for k, rec in idx.items() if k[0] == bb and k[1] == run]
            row: dict[str, Any] = {"backbone": bb, "strategy": specs.label(run), "run": run,
                                   "benchmarks": "+".join(b for b, _ in mine)}
            complete = {b for b, _ in mine} >= wanted
            for col in cols:
                vals = [rec.get(col) for _, rec in mine]
                row[col] = (math.nan if not complete or any(v is None for v in vals)
                            else 100.0 * sum(float(v) for v in vals) / len(vals))
            if paper:
                for col in cols:
                    row[f"paper {col}"] = pn.paper_value(3, bb, specs.paper_label(run), col)
            rows.append(row)
    columns = ["backbone", "strategy", "run", "benchmarks", *cols]
    if paper:
        columns += [f"paper {c}" for c in cols]
    df = pd.DataFrame(rows, columns=columns)
    df.attrs["digits"] = 2
    return df


# ---------------------------------------------------------------- Table 4

def table4(records: Iterable[Mapping[str, Any]], metrics: Sequence[str] = ("cos", "l2", "kl"),
           paper: bool = False, backbones: Sequence[str] | None = None, run_specs=None) -> pd.DataFrame:
    """Table 4: ``<pair>.<metric>`` (pair ``base_sft`` / ``sft_rl``; metric cos, l2, kl) per
    (backbone, run), from consistency results. Columns only for the stage pairs present."""
    specs = RunSpecs(run_specs)
    recs = list(records)
    for r in recs:
        pair = _need(r, "stage_pair", "table4")
        if pair not in STAGE_PAIRS:
            raise ValueError(f"table4: unknown stage_pair {pair!r} (expected one of {', '.join(STAGE_PAIRS)})")
    idx = index_records(recs, ("backbone", "run", "stage_pair"), "table4")
    pairs = [p for p in STAGE_PAIRS if any(k[2] == p for k in idx)]
    cols = [f"{p}.{m}" for p in pairs for m in metrics]
    rows = []
    for bb in _backbone_order((k[0] for k in idx), backbones, 4):
        for run in sorted({k[1] for k in idx if k[0] == bb}, key=specs.sort_key):
            row: dict[str, Any] = {"backbone": bb, "strategy": specs.label(run), "run": run}
            for p in pairs:
                rec = idx.get((bb, run, p))
                for m in metrics:
                    v = rec.get(m) if rec is not None else None
                    row[f"{p}.{m}"] = math.nan if v is None else float(v)
            if paper:
                for col in cols:
                    row[f"paper {col}"] = pn.paper_value(4, bb, specs.paper_label(run), col)
            rows.append(row)
    columns = ["backbone", "strategy", "run", *cols] + ([f"paper {c}" for c in cols] if paper else [])
    df = pd.DataFrame(rows, columns=columns)
    digits = {c: (2 if c.endswith(".l2") else 4) for c in columns}
    df.attrs["digits"] = digits
    labels = {}
    for p in pairs:
        for m in metrics:
            label = f"{STAGE_PAIRS[p]} {CONSISTENCY_METRICS.get(m, m)}"
            labels[f"{p}.{m}"] = label
            labels[f"paper {p}.{m}"] = f"paper {label}"
    df.attrs["labels"] = labels
    return df


# ---------------------------------------------------------------- Table 5

def table5(records: Iterable[Mapping[str, Any]], paper: bool = False, backbones: Sequence[str] | None = None,
           run_specs=None) -> pd.DataFrame:
    """Table 5: MT-Bench scores (1-10) per (backbone, run): ``Total`` (with its interval over dialogues), then one
    column per category present, in the paper's order and names (``Extract`` for ``extraction``; a category the
    paper lacks keeps its name, after them); ``judged``/``unrated``: turns with and without a rating (an unrated
    turn is in no mean); ``truncated``: answers cut at ``mtbench.max_new_tokens`` (judged as cut). ``paper`` adds
    ``paper <column>``: the paper's number for the same backbone and strategy (every GIFT β maps to the paper's GIFT
    row)."""
    specs = RunSpecs(run_specs)
    idx = index_records(records, ("backbone", "run"), "table5")
    present = {c for rec in idx.values() for c in rec["categories"]}
    cats = [c for c in pn.MTBENCH_COLUMNS if c in present] + sorted(present - set(pn.MTBENCH_COLUMNS))
    cols = ["Total", *[pn.MTBENCH_COLUMNS.get(c, c) for c in cats]]
    rows = []
    for bb in _backbone_order((k[0] for k in idx), backbones, 5):
        for run in sorted({k[1] for k in idx if k[0] == bb}, key=specs.sort_key):
            rec = idx[(bb, run)]
            total, ci = rec["total"], rec["total"].get("ci95")
            row: dict[str, Any] = {"backbone": bb, "method_class": specs.method_class(run),
                                   "strategy": specs.label(run), "run": run, "judge": rec.get("judge", "")}
            row["Total"] = math.nan if total["score"] is None else float(total["score"])
            row["Total CI95"] = ("" if not ci or any(c is None or math.isnan(c) for c in ci)
                                 else f"[{ci[0]:.2f}, {ci[1]:.2f}]")
            for cat, col in zip(cats, cols[1:]):
                cell = rec["categories"].get(cat)
                row[col] = math.nan if cell is None or cell["score"] is None else float(cell["score"])
            row["judged"], row["unrated"] = int(total["n"]), int(total["unrated"])
            row["truncated"] = math.nan if total.get("truncated") is None else int(total["truncated"])
            if paper:
                for col in cols:
                    row[f"paper {col}"] = pn.paper_value(5, bb, specs.paper_label(run), col)
            rows.append(row)
    columns = ["backbone", "method_class", "strategy", "run", "judge", "Total", "Total CI95", *cols[1:],
               "judged", "unrated", "truncated", *([f"paper {c}" for c in cols] if paper else [])]
    df = pd.DataFrame(rows, columns=columns)
    df.attrs["digits"] = {"judged": 0, "unrated": 0, "truncated": 0}   # counts; every other number with 2
    return df


# ---------------------------------------------------------------- over training seeds

def over_seeds(df: pd.DataFrame, run_specs=None) -> pd.DataFrame:
    """A paper table with one row per grid cell when the plan has replicates over seeds (config ``seeds``): its
    value columns averaged over seeds with their seed-level intervals (:mod:`giftlab.reporting.seeds`); per-run
    problem-level intervals are dropped (the seed interval is the wider, and the claims pool both). A table of a
    config without seeds is returned as it is."""
    specs = RunSpecs(run_specs)
    skip = {"backbone", "method_class", "strategy", "run", "benchmarks", "metric", "judge", *TURN_COUNTS}
    values = [c for c in df.columns if c not in skip and not c.startswith("paper ") and not c.endswith("CI95")
              and _numeric(df, c)]
    digits = df.attrs.get("digits", 2)
    ci_digits = 4 if isinstance(digits, Mapping) and any(v == 4 for v in digits.values()) else 2
    return collapse_seeds(df, specs, values, drop_columns=[c for c in df.columns if c.endswith("CI95")],
                          ci_digits=ci_digits, count_columns=[c for c in TURN_COUNTS if c in df.columns])


# ---------------------------------------------------------------- the best value in bold

def mark_best(df: pd.DataFrame) -> pd.DataFrame:
    """Mark, per backbone, the highest value of each value column (a benchmark or the Average; not an interval, a
    count or the paper's numbers) for bold print, as Tables 1 and 2 of the paper print "the best performance"; ties
    are all marked. :func:`to_markdown` and :func:`to_latex` print the marks (``attrs["bold"]``: (row, column))."""
    skip = {"seeds", *TURN_COUNTS}
    columns = [c for c in df.columns if _numeric(df, c) and c not in skip and not c.startswith("paper ")]
    best = set()
    for _, rows in df.groupby("backbone", sort=False):
        for col in columns:
            top = rows[col].max()  # NaN cells (a missing run) are skipped
            if not math.isnan(top):
                best.update((i, col) for i in rows.index[rows[col] == top])
    df.attrs["bold"] = best
    return df


# ---------------------------------------------------------------- writing

_TEX_REPLACE = {
    "→": r"$\rightarrow$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "β": r"$\beta$",
    "⁺": r"$^{+}$", "±": r"$\pm$", "∞": r"$\infty$",
}


def _tex_escape(text: str) -> str:
    out = []
    for ch in str(text):
        if ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch == "\\":
            out.append(r"\textbackslash{}")
        elif ch == "~":
            out.append(r"\textasciitilde{}")
        elif ch == "^":
            out.append(r"\textasciicircum{}")
        else:
            out.append(_TEX_REPLACE.get(ch, ch))
    return "".join(out)


def _digits_for(df: pd.DataFrame, col: str, digits: int | Mapping[str, int] | None) -> int:
    spec = digits if digits is not None else df.attrs.get("digits", 2)
    if isinstance(spec, Mapping):
        return int(spec.get(col, 2))
    return int(spec)


def _cells(df: pd.DataFrame, digits, missing: str, bold=lambda text: text, escape=lambda text: text
           ) -> list[list[str]]:
    """Each row's cells as text, ``escape``d; those :func:`mark_best` marked, ``bold``."""
    columns = [df[c].tolist() for c in df.columns]
    marked = df.attrs.get("bold", set())
    rows = []
    for i, index in enumerate(df.index):
        cells = []
        for col, values in zip(df.columns, columns):
            v = values[i]
            if v is None or (pd.api.types.is_number(v) and not isinstance(v, bool) and math.isnan(v)):
                cells.append(missing)
            elif pd.api.types.is_number(v) and not isinstance(v, bool):
                text = escape(f"{float(v):.{_digits_for(df, col, digits)}f}")
                cells.append(bold(text) if (index, col) in marked else text)
            else:
                cells.append(escape(str(v)))
        rows.append(cells)
    return rows


def _numeric(df: pd.DataFrame, col: str) -> bool:
    return pd.api.types.is_numeric_dtype(df[col])


def to_markdown(df: pd.DataFrame, digits: int | Mapping[str, int] | None = None) -> str:
    """A pipe table (numbers right-aligned, NaN as "—", :func:`mark_best`'s cells in bold)."""
    labels = df.attrs.get("labels", {})
    header = [str(labels.get(c, c)).replace("|", r"\|") for c in df.columns]
    align = ["---:" if _numeric(df, c) else ":---" for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for cells in _cells(df, digits, "—", bold=lambda text: f"**{text}**", escape=lambda text: text.replace("|", r"\|")):
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, digits: int | Mapping[str, int] | None = None) -> str:
    """A booktabs ``tabular`` (``\\usepackage{booktabs}``), NaN as "--", :func:`mark_best`'s cells in bold."""
    labels = df.attrs.get("labels", {})
    spec = "".join("r" if _numeric(df, c) else "l" for c in df.columns)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_tex_escape(labels.get(c, c)) for c in df.columns) + r" \\", r"\midrule"]
    for cells in _cells(df, digits, "--", bold=lambda text: rf"\textbf{{{text}}}", escape=_tex_escape):
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def subset_notes(summaries) -> list[str]:
    """One line per benchmark whose evaluation read another number of problems than its official set has (a subset,
    a stand-in): the paper's numbers beside its column are on the whole set (``benchmark_checks`` of its summaries)."""
    sizes: dict[str, tuple[int, int]] = {}
    for rec in summaries:
        checks = rec.get("benchmark_checks") or {}
        if checks.get("size_matches_official") is False:
            name = rec.get("benchmark") or rec["provenance"]["config"]["benchmark"]
            sizes.setdefault(name, (checks["rows_read"] - checks["duplicates_dropped"], checks["official_size"]))
    return [f"{pn.paper_column(name) or name}: {read:,} of the official set's {official:,} problems were evaluated; "
            "the paper's numbers are on the whole set." for name, (read, official) in sizes.items()]


def kl_notes(consistency: Iterable[Mapping[str, Any]]) -> list[str]:
    """Table 4's KL direction, as its results record it (``kl_direction``): the paper does not state its own."""
    directions = dict.fromkeys(rec["kl_direction"] for rec in consistency if rec.get("kl_direction"))
    return [f"KL is {d}. The paper does not state its direction; the reverse is kl_reverse in each "
            "results/consistency JSON." for d in directions]


def write_table(df: pd.DataFrame, stem: str | Path, digits: int | Mapping[str, int] | None = None,
                notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``<stem>.csv`` (full precision), ``<stem>.md`` (pipe table) and ``<stem>.tex``
    (booktabs), each through a temporary name and an atomic rename; ``notes`` follow the table in the last two
    (a CSV has no place for them). Returns the three paths."""
    stem = Path(stem)
    paths = {ext: stem.with_name(f"{stem.name}.{ext}") for ext in ("csv", "md", "tex")}
    write_text_atomic(paths["csv"], df.to_csv(index=False))
    write_text_atomic(paths["md"], to_markdown(df, digits) + "".join(f"\nNote: {note}\n" for note in notes))
    write_text_atomic(paths["tex"], to_latex(df, digits) + "".join(f"% Note: {note}\n" for note in notes))
    return paths
