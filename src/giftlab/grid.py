"""The runs of the experiment grid: their ids and what each one is (giftlab.plan builds jobs and files from them).

The grid (paper §4, Appendix E): one SFT run per objective of ``sft.methods`` (GIFT once per β of
``sft.gift_betas``), Direct SFT (plain SFT on the SFT and RL subsets, no RL), GRPO from each SFT run (all, or those
of ``grpo.runs``), Direct RL (GRPO from the base model), and one run per RL-stage method of ``unified.methods``
(the paper's Unified Paradigms, LUFFY and ReLIFT: the ``grpo`` rule from the base model with that method; their
registry is ``giftlab.rl_methods``, which this module does not import: ``giftlab.config`` checks the names).

Seeds: ``seeds: [..]`` in the config repeats every run of the grid once per training seed (SFT and GRPO; the world,
the split and the tiny bases keep the config's ``seed``). A run trained with the config's own ``seed`` keeps its
plain id, so adding seeds to a workspace reuses the runs it already has; the others get ``-s<seed>``
(``gift-b3-s7``). The runs of one grid cell across seeds share a ``group`` (the plain id), which the reports
aggregate over.

A run's id is made in one place, :func:`run_name` (``sft``, ``gift-b3``, ``gift-b3-s7``; a unified run's id is its
method's name); nothing needs to read it back: method, β, RL method, seed and group are fields of :class:`RunSpec`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Mapping

#: The consistency analyses' stage pairs (Table 4, Figure 2, claim 3) and their labels: a run's model before and
#: after SFT, and before and after RL (the extra models' ``base_extra`` pair is scripts/consistency.py's own).
STAGE_PAIRS = {"base_sft": "Base→SFT", "sft_rl": "SFT→RL"}

# The paper's two "Direct" baselines: plain SFT on the SFT + RL data with no RL afterwards, and GRPO straight from
# the base model.
DIRECT_SFT = "direct_sft"
DIRECT_RL = "direct_rl"
# A run id (the Snakefile's `run` wildcard): an objective, optionally at one β (gift-b3, gift-binf), optionally
# with a training seed other than the config's (gift-b3-s7).
SEED_SUFFIX = r"(-s[0-9]+)?"
RUN_PATTERN = r"[a-z][a-z0-9_]*(-b([0-9]+(\.[0-9]+)?|inf))?" + SEED_SUFFIX
#: The methods the SFT-vs-GIFT analyses compare (Tables 3-4, Figures 1-3).
COMPARED_METHODS = ("sft", "gift")
#: The paper's labels of the two baselines (the objectives' labels are in their registry entries).
DIRECT_LABELS = {DIRECT_SFT: "Direct SFT", DIRECT_RL: "Direct RL"}


def format_beta(beta: float) -> str:
    """β as run ids and labels write it: plain decimal digits, every one of them (``3``, ``0.5``, ``1000000``,
    ``0.00001``), so each β has its own id and every id matches :data:`RUN_PATTERN` (``:g`` wrote ``1e+06``, which
    the `run` wildcard never matched, and rounded to 6 digits)."""
    if math.isinf(beta):
        return "inf"
    text = format(Decimal(repr(float(beta))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def run_name(method: str, beta: float | None = None, seed: int | None = None) -> str:
    """The one place a run's id is made: ``sft``, ``gift-b10``, ``gift-b0.5``; with a seed other than the config's,
    ``-s<seed>`` after it (``gift-b10-s3``)."""
    name = method if beta is None else f"{method}-b{format_beta(float(beta))}"
    return name if seed is None else with_seed(name, seed)


def with_seed(run_id: str, seed: int) -> str:
    """The id of ``run_id``'s replicate trained with ``seed`` (not the config's own seed)."""
    return f"{run_id}-s{int(seed)}"


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid. ``method``/``beta``: the SFT objective that trains it (Direct SFT: plain ``sft``;
    Direct RL and the unified runs: none); ``sft_splits``: the subsets SFT trains on; ``rl``: whether GRPO follows
    (from the SFT checkpoint, or from the base model when ``sft`` is False); ``final_stage``: where its final policy
    is; ``rl_method``: the RL-stage method of a unified run (a key of ``giftlab.rl_methods.RL_METHODS``), None for
    plain GRPO; ``seed``: the training seed when the config lists ``seeds`` (None: the config's ``seed``);
    ``group``: the id the run's replicates share (its id without the seed), None without ``seeds``."""

    id: str
    method: str | None
    beta: float | None
    sft: bool = True
    rl: bool = True
    sft_splits: tuple[str, ...] = ("sft",)
    final_stage: str = "rl"
    rl_method: str | None = None
    seed: int | None = None
    group: str | None = None

    @property
    def cell(self) -> str:
        """The grid cell: the id shared by the run's replicates over seeds (its own id without ``seeds``)."""
        return self.group or self.id

    @property
    def compared(self) -> bool:
        """In the SFT-vs-GIFT analyses (Tables 3-4, Figures 1-3): an SFT or GIFT run that goes through RL."""
        return self.method in COMPARED_METHODS and self.rl and self.cell not in (DIRECT_SFT, DIRECT_RL)

    @property
    def strategy(self) -> str:
        """The paper's row key: the objective, the Direct baseline the run is, or its RL-stage method."""
        if self.rl_method is not None:
            return self.rl_method
        return self.cell if self.cell in (DIRECT_SFT, DIRECT_RL) else self.method

    def as_record(self) -> dict[str, Any]:
        record = {"strategy": self.strategy, "method": self.method, "beta": self.beta, "final_stage": self.final_stage}
        if self.rl_method is not None:  # only for unified runs: the other runs' records stay as they were
            record["rl_method"] = self.rl_method
        if self.group is not None:  # only with `seeds`: a config without them records what it always did
            record.update(seed=self.seed, group=self.group)
        return record


def grid_runs(config: Mapping[str, Any]) -> dict[str, RunSpec]:
    """Every run of the grid by id, in config order: the SFT runs (one per method, one per β for GIFT), Direct SFT,
    Direct RL, then one run per ``unified.methods`` entry (id = the method's name, GRPO with it from the base)."""
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
    for name in (config.get("unified") or {}).get("methods") or []:
        runs[name] = RunSpec(name, None, None, sft=False, rl=True, rl_method=name)
    return replicate(runs, config.get("seeds"), int(config["seed"]))


def replicate(runs: Mapping[str, RunSpec], seeds, config_seed: int) -> dict[str, RunSpec]:
    """Every run once per training seed of ``seeds`` (None: the runs as they are), replicates next to each other.
    The config's own seed keeps the plain id (:func:`run_name`)."""
    if not seeds:
        return dict(runs)
    out: dict[str, RunSpec] = {}
    for rid, spec in runs.items():
        for seed in seeds:
            seed = int(seed)
            new_id = rid if seed == config_seed else with_seed(rid, seed)
            out[new_id] = replace(spec, id=new_id, seed=seed, group=rid)
    return out


def unified_runs(runs: Mapping[str, RunSpec]) -> list[str]:
    """The ids of the unified-paradigm runs (an RL-stage method other than plain GRPO), in grid order."""
    return [rid for rid, spec in runs.items() if spec.rl_method is not None]
