"""What the reports know of a run: its strategy, method and β, as the plan made it (``giftlab.plan.Plan.run_table``,
passed in each report job's config as ``run_specs``). A run id is only a key here, never read back.

The one place runs map to the paper's row labels, method classes and row order (the objectives' labels and
order, the unified paradigms' labels and classes: their registry entries, carried by the run table; the maps below
are the fallbacks for a run table without them).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from giftlab.grid import format_beta

# The paper's rows that are not objectives of this grid: the Direct baselines and the unified paradigms, in the
# paper's row order, before every objective (whose labels and order come with the run table, from the registry;
# so do the unified runs' labels and classes, from giftlab.rl_methods: these are the fallbacks).
PAPER_HEAD_LABELS = {"direct_sft": "Direct SFT", "direct_rl": "Direct RL", "luffy": "LUFFY", "relift": "ReLIFT"}
METHOD_CLASSES = {
    "direct_sft": "Direct SFT/RL",
    "direct_rl": "Direct SFT/RL",
    "luffy": "Unified Paradigms",
    "relift": "Unified Paradigms",
}
DEFAULT_METHOD_CLASS = "SFT-then-RL"
UNIFIED_CLASS = "Unified Paradigms"
HEAD_ORDER = tuple(PAPER_HEAD_LABELS)


def beta_or_inf(beta: float | None) -> float:
    """β for plotting and ordering: plain SFT (no β) is GIFT's β → ∞ limit."""
    return math.inf if beta is None else beta


class RunSpecs:
    """Lookups over a run table ``{run: {"strategy", "method", "beta", ...}}``; a run it does not know is labelled
    by its id and sorted last."""

    def __init__(self, table: "Mapping[str, Mapping[str, Any]] | RunSpecs | None" = None):
        if isinstance(table, RunSpecs):
            table = table.table
        self.table = {run: dict(rec) for run, rec in (table or {}).items()}
        # a cell of replicates over seeds (config seeds) answers as its first replicate (same method, β, label)
        self._cells = {}
        for run, rec in self.table.items():
            if rec.get("group") is not None:
                self._cells.setdefault(rec["group"], run)

    def _get(self, run: str, key: str) -> Any:
        return (self.table.get(run) or self.table.get(self._cells.get(run), {})).get(key)

    def strategy(self, run: str) -> str:
        """The paper's strategy key: the objective, or ``direct_sft`` / ``direct_rl``; unknown runs: the id."""
        return self._get(run, "strategy") or run

    def method(self, run: str) -> str | None:
        return self._get(run, "method")

    def beta(self, run: str) -> float | None:
        beta = self._get(run, "beta")
        return None if beta is None else float(beta)

    def group(self, run: str) -> str:
        """The grid cell a run replicates over seeds (config ``seeds``): its ``group``, else the run itself."""
        return self._get(run, "group") or run

    def seed(self, run: str) -> int | None:
        """The training seed of a replicate (config ``seeds``); None for runs of a config without seeds."""
        return self._get(run, "seed")

    def beta_or_inf(self, run: str) -> float:
        """β for plotting and ordering (:func:`beta_or_inf`)."""
        return beta_or_inf(self.beta(run))

    def paper_label(self, run: str) -> str:
        """The paper's row label for a run, without β (``GIFT``)."""
        return self._get(run, "label") or PAPER_HEAD_LABELS.get(self.strategy(run), run)

    def label(self, run: str) -> str:
        """Row label in our tables: the paper's label, with β for GIFT runs (``GIFT (β=3)``; a label that ends in
        parentheses takes β inside them: ``GIFT (clipped, β=3)``)."""
        beta = self.beta(run)
        label = self.paper_label(run)
        if beta is None:
            return label
        if label.endswith(")") and "(" in label:
            return f"{label[:-1]}, β={format_beta(beta)})"
        return f"{label} (β={format_beta(beta)})"

    def method_class(self, run: str) -> str:
        return self._get(run, "method_class") or METHOD_CLASSES.get(self.strategy(run), DEFAULT_METHOD_CLASS)

    def rl_method(self, run: str) -> str | None:
        """The RL-stage method of a unified run (``luffy``, ``relift``); None for plain GRPO and unknown runs."""
        return self._get(run, "rl_method")

    def is_unified(self, run: str) -> bool:
        """A Unified Paradigms run (LUFFY, ReLIFT): RL from the base model with an RL method other than GRPO."""
        return self.rl_method(run) is not None or self.method_class(run) == UNIFIED_CLASS

    def sort_key(self, run: str) -> tuple:
        """The paper's row order: the Direct baselines and unified paradigms (a unified method the paper lacks after
        them), then the objectives in registry order, by β; runs the table does not know last."""
        strategy, order = self.strategy(run), self._get(run, "order")
        if strategy in HEAD_ORDER:
            group = (0, HEAD_ORDER.index(strategy))
        elif self.rl_method(run) is not None:
            group = (0, len(HEAD_ORDER))
        else:
            group = (1, order) if order is not None else (2, 0)
        return (*group, self.beta_or_inf(run), run)
