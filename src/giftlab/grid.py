"""The runs of the experiment grid: their ids and what each one is (giftlab.plan builds jobs and files from them).

The grid (paper §4, Appendix E): one SFT run per objective of ``sft.methods`` (GIFT once per β of
``sft.gift_betas``), Direct SFT (plain SFT on the SFT and RL subsets, no RL), GRPO from each SFT run (all, or those
of ``grpo.runs``), and Direct RL (GRPO from the base model). A run's id is made in one place, :func:`run_name`
(``sft``, ``gift-b3``); nothing needs to read it back: method and β are fields of :class:`RunSpec`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

# The paper's two "Direct" baselines: plain SFT on the SFT + RL data with no RL afterwards, and GRPO straight from
# the base model.
DIRECT_SFT = "direct_sft"
DIRECT_RL = "direct_rl"
# A run id (the Snakefile's `run` wildcard): an objective, optionally at one β (gift-b3, gift-binf).
RUN_PATTERN = r"[a-z][a-z0-9_]*(-b([0-9]+(\.[0-9]+)?|inf))?"
#: The methods the SFT-vs-GIFT analyses compare (Tables 3-4, Figures 1-3).
COMPARED_METHODS = ("sft", "gift")
#: The paper's labels of the two baselines (the objectives' labels are in their registry entries).
DIRECT_LABELS = {DIRECT_SFT: "Direct SFT", DIRECT_RL: "Direct RL"}


def format_beta(beta: float) -> str:
    return "inf" if math.isinf(beta) else f"{beta:g}"


def run_name(method: str, beta: float | None = None) -> str:
    """The one place a run's id is made: ``sft``, ``gift-b10``, ``gift-b0.5``."""
    return method if beta is None else f"{method}-b{format_beta(float(beta))}"


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid. ``method``/``beta``: the SFT objective that trains it (Direct SFT: plain ``sft``;
    Direct RL: none); ``sft_splits``: the subsets SFT trains on; ``rl``: whether GRPO follows (from the SFT
    checkpoint, or from the base model when ``sft`` is False); ``final_stage``: where its final policy is."""

    id: str
    method: str | None
    beta: float | None
    sft: bool = True
    rl: bool = True
    sft_splits: tuple[str, ...] = ("sft",)
    final_stage: str = "rl"

    @property
    def compared(self) -> bool:
        """In the SFT-vs-GIFT analyses (Tables 3-4, Figures 1-3): an SFT or GIFT run that goes through RL."""
        return self.method in COMPARED_METHODS and self.rl and self.id not in (DIRECT_SFT, DIRECT_RL)

    @property
    def strategy(self) -> str:
        """The paper's row key: the objective, or the Direct baseline the run is."""
        return self.id if self.id in (DIRECT_SFT, DIRECT_RL) else self.method

    def as_record(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "method": self.method, "beta": self.beta, "final_stage": self.final_stage}


def grid_runs(config: Mapping[str, Any]) -> dict[str, RunSpec]:
    """Every run of the grid by id, in config order: the SFT runs (one per method, one per β for GIFT), Direct SFT,
    then Direct RL."""
    from giftlab.objectives import OBJECTIVES  # the registry: which objectives sweep β

    sft, grpo = config["sft"], config["grpo"]
    wanted = set(grpo.get("runs") or [])
    runs: dict[str, RunSpec] = {}
    for method in sft["methods"]:
        for beta in (sft["gift_betas"] if OBJECTIVES[method].beta_swept else [None]):
            rid = run_name(method, beta)
            runs[rid] = RunSpec(rid, method, None if beta is None else float(beta), rl=not wanted or rid in wanted)
    if sft.get("direct_sft"):
        runs[DIRECT_SFT] = RunSpec(DIRECT_SFT, "sft", None, rl=False, sft_splits=("sft", "rl"), final_stage="sft")
    if grpo.get("direct_rl"):
        runs[DIRECT_RL] = RunSpec(DIRECT_RL, None, None, sft=False)
    return runs
