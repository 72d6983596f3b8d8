"""The paper's reported numbers (GIFT, Tables 1–5), transcribed exactly, and a loader.

The data live in ``reporting/paper/table<N>.csv`` in a tidy long format, one cell per row::

    backbone,method_class,strategy,benchmark,value
    Qwen2.5-7B,SFT-then-RL,GIFT,GSM8K,92.06

* ``backbone``: ``Qwen2.5-7B`` or ``Llama-3.1-8B`` (the paper writes "Llama3.1-8B" in Tables 1/2/5).
* ``method_class``: ``Direct SFT/RL``, ``Unified Paradigms`` or ``SFT-then-RL`` (Tables 1, 2). Tables
  3–5 have no class column; their rows are the SFT-then-RL strategies and carry that class.
* ``strategy``: the paper's row label (Table 4's "Std. SFT" is stored as ``SFT``, like every other
  table, so one label map serves all of them).
* ``benchmark``: the column. Table 1: ``GSM8K, AIME24, AIME25, MATH500, HE+, MBPP+, Average``
  (pass@1 in %, except AIME24/25 on Llama-3.1-8B, which the paper reports as pass@32); Table 2:
  ``GPQA, MMLU-Redux, ARC-Challenge, MMLU-Pro, Average``; Table 3 (pre-RL, averaged over the math
  benchmarks): ``pass@1, pass@2, pass@4, pass@8``; Table 4: ``<pair>.<metric>`` with pair
  ``base_sft`` / ``sft_rl`` and metric ``cos`` / ``l2`` / ``kl``; Table 5 (MT-Bench, 0–10):
  ``Total, Writing, Roleplay, Reasoning, Math, Coding, Extract, STEM, Humanities``.
* ``value``: as printed (``15.00`` keeps its trailing zeros in the file; the loader parses floats).

Rows the paper does not report are absent (e.g. Table 2 has no Label Smoothing / KD rows and no
Unified Paradigms for Llama); nothing is filled in.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parent / "paper"
TABLES = (1, 2, 3, 4, 5)
COLUMNS = ("backbone", "method_class", "strategy", "benchmark", "value")
PAPER_BACKBONES = ("Qwen2.5-7B", "Llama-3.1-8B")
AVERAGE_COLUMN = {1: "Average", 2: "Average", 5: "Total"}  # the per-row summary column

# Our benchmark names (registry / file stems) -> the paper's column names.
BENCHMARK_COLUMNS = {
    "gsm8k": "GSM8K", "aime24": "AIME24", "aime25": "AIME25", "math500": "MATH500",
    "humaneval_plus": "HE+", "mbpp_plus": "MBPP+", "gpqa": "GPQA", "mmlu_redux": "MMLU-Redux",
    "arc_challenge": "ARC-Challenge", "mmlu_pro": "MMLU-Pro",
}
# MT-Bench's categories (FastChat's question.jsonl) -> Table 5's columns, in the paper's order (after "Total")
MTBENCH_COLUMNS = {"writing": "Writing", "roleplay": "Roleplay", "reasoning": "Reasoning", "math": "Math",
                   "coding": "Coding", "extraction": "Extract", "stem": "STEM", "humanities": "Humanities"}


def _path(table: int) -> Path:
    if table not in TABLES:
        raise ValueError(f"paper table {table!r}: the paper has tables {', '.join(map(str, TABLES))}")
    return PAPER_DIR / f"table{table}.csv"


@lru_cache(maxsize=None)
def _load(table: int) -> pd.DataFrame:
    path = _path(table)
    if not path.is_file():
        raise FileNotFoundError(f"missing paper data file: {path}")
    df = pd.read_csv(path, dtype={"value": float}, keep_default_na=False)
    if tuple(df.columns) != COLUMNS:
        raise ValueError(f"{path}: expected columns {', '.join(COLUMNS)}, got {', '.join(df.columns)}")
    return df


def load_paper_table(table: int) -> pd.DataFrame:
    """Table ``table`` (1–5) in the tidy long format (a fresh copy; values as floats)."""
    return _load(table).copy()


def paper_wide(table: int) -> pd.DataFrame:
    """Table ``table`` as printed: one row per (backbone, method_class, strategy), one column per
    benchmark, rows and columns in the paper's order."""
    df = _load(table)
    wide = df.pivot_table(index=["backbone", "method_class", "strategy"], columns="benchmark",
                          values="value", sort=False)
    wide = wide[list(dict.fromkeys(df["benchmark"]))]
    wide.columns.name = None
    return wide.reset_index()


# the names our configs give the paper's two backbones (config/paper.yaml's keys, their hub ids): matched whole, so
# a backbone of one's own ("qwen_small", "Qwen/Qwen2.5-1.5B") gets no paper numbers beside it
_PAPER_BACKBONE_NAMES = {"qwen": "Qwen2.5-7B", "qwen/qwen2.5-7b": "Qwen2.5-7B", "qwen2.5-7b": "Qwen2.5-7B",
                         "llama": "Llama-3.1-8B", "meta-llama/llama-3.1-8b": "Llama-3.1-8B",
                         "llama-3.1-8b": "Llama-3.1-8B"}


def paper_order(table: int, key: str) -> list[str]:
    """The paper's order of table ``table``'s ``backbone``s or ``benchmark`` columns, as printed."""
    return list(dict.fromkeys(_load(table)[key]))


def in_paper_order(names: Sequence[str], paper: Sequence[str], to_paper) -> list[str]:
    """``names`` with those the paper has (``to_paper(name)`` in ``paper``) in the paper's order, the others after
    them in their own order: a table or figure of the paper's backbones and benchmarks reads as the paper's does."""
    rank = {name: i for i, name in enumerate(paper)}
    return sorted(names, key=lambda n: (0, rank[to_paper(n)]) if to_paper(n) in rank else (1, 0))


def paper_backbone(name: str) -> str | None:
    """Our backbone name (``qwen``, ``Qwen/Qwen2.5-7B``, ``llama``, …) -> the paper's, or None."""
    return _PAPER_BACKBONE_NAMES.get(name.lower())


def as_paper_backbone(name: str) -> str | None:
    """A backbone name, ours or already the paper's -> the paper's, or None."""
    return name if name in PAPER_BACKBONES else paper_backbone(name)


def paper_column(benchmark: str) -> str | None:
    """Our benchmark name -> the paper's column name (None for benchmarks the paper lacks)."""
    if benchmark in BENCHMARK_COLUMNS.values():
        return benchmark
    return BENCHMARK_COLUMNS.get(benchmark.lower())


def paper_value(table: int, backbone: str, strategy: str, column: str) -> float:
    """One reported cell; NaN when the paper has no such cell. ``backbone`` may be ours or the paper's."""
    bb = as_paper_backbone(backbone)
    df = _load(table)
    hit = df[(df["backbone"] == bb) & (df["strategy"] == strategy) & (df["benchmark"] == column)]
    if hit.empty:
        return math.nan
    if len(hit) > 1:
        raise ValueError(f"paper table {table}: {len(hit)} cells for ({bb}, {strategy}, {column})")
    return float(hit["value"].iloc[0])
