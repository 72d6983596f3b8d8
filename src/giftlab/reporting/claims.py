"""Does THIS run agree with the paper? One verdict per claim, written as markdown.

Claims checked (each per backbone and per GIFT β, against plain SFT of the same backbone; claim 4 against each
unified-paradigm run of the same backbone):

1. ``gift_beats_sft``: after RL, GIFT's pass@1 is higher than SFT's (Tables 1, 2; a cell Table 1 reports at another
   pass@k, ``eval.report_metric``, e.g. Llama's AIME at pass@32, is judged at that one).
2. ``passk_advantage_grows``: before RL, GIFT − SFT in pass@k grows with k (Table 3).
3. ``gift_more_consistent``: GIFT's updates are more consistent — higher last-layer cos, lower L2,
   lower KL, higher top-K overlap — for Base→SFT and SFT→RL (Table 4, Figure 2).
4. ``gift_beats_unified``: after RL, GIFT's Table 1 Average is higher than that of the unified paradigms (LUFFY,
   ReLIFT: RL from the base model with demonstrations), as §4 claims it (59.55 vs 56.69 / 56.27; the paper's own
   GSM8K cell has GIFT below LUFFY); with more than one benchmark in Table 1 each benchmark's check is shown as
   detail, outside the verdict and its m. The paper reports parity on Table 2's.

Every check is a paired comparison (both runs are scored on the same problems, and replicates over training seeds
are paired by seed), decided from an interval of the difference Δ: ``agree`` when the whole interval lies on the
paper's side of 0, ``disagree`` when it lies on the other side, ``inconclusive`` when it straddles 0. The interval,
from the strongest evidence the inputs hold:

* seeds (config ``seeds``, ≥ 2 seeds both runs share): Student's t over the per-seed differences (the seed-level
  test the verdict uses), with the effect size d_z = mean / sd of those differences and, for pass@1 when the
  samples are given, the pooled problem × seed bootstrap beside it (:func:`giftlab.stats.nested_bootstrap_ci`);
* one seed, pass@k with the samples given: a percentile bootstrap of the per-problem differences (claims 1, 4:
  pass@1; claim 2: the per-problem growth of the pass@k advantage, resampled within each benchmark);
* one seed, claim 3 with both results' per-example sums (``per_example``, written by scripts/consistency.py): a
  percentile bootstrap of the difference of the two token means, the validation examples resampled together (both
  runs are scored on the same examples, so what the examples share cancels);
* one seed otherwise: the two runs' own 95% intervals combined as sqrt(h₁² + h₂²) (consistency results without
  ``per_example``; claim 2 without samples uses the pass@1 intervals as the scale of the change in advantage, a
  heuristic said so in the report);
* none (cos and L2 of the last layer's parameters, ``eval.consistency_geometry: parameters``, of one seed: exact
  functions of two checkpoints, whose seed-to-seed variation one seed cannot measure): the check is ``untested``,
  shown with its point estimate but counted neither in the claim's verdict nor in its number of checks m.

Multiplicity: a claim is judged from all its checks at once (claim 1: every β × benchmark × backbone), so each
interval is Bonferroni's at level 1 − α/m for a claim of m checks (α = 0.05; for the combined 95% intervals, the
half-width scaled by z(1 − α/2m) / z(0.975)), keeping the chance that any check of a claim errs below 5%; a
bootstrap interval draws enough resamples to leave 20 beyond each of its ends (at least 10,000:
:func:`giftlab.stats.resamples_for`). A claim's
overall verdict, from its tested checks: ``agree`` / ``disagree`` / ``inconclusive`` when all say so, ``mixed``
otherwise, ``untested`` when none has an interval, ``no data`` when the inputs hold no GIFT–SFT pair (claim 4: no
GIFT and unified-paradigm run of the same backbone, e.g. ``unified.methods`` is empty).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, Iterable, Mapping, Sequence

from giftlab.io import write_text_atomic
from giftlab.reporting.runs import RunSpecs
from giftlab.grid import STAGE_PAIRS
from giftlab.reporting.tables import index_records, job_field
from giftlab.stats import (nested_bootstrap_ci, paired_ratio_bootstrap_ci, pass_at_k_single, per_problem_pass_at_k,
                           resamples_for, seed_interval, simultaneous_alpha, stratified_bootstrap_ci)

AGREE, DISAGREE, INCONCLUSIVE, MIXED, NO_DATA = "agree", "disagree", "inconclusive", "mixed", "no data"
UNTESTED = "untested"  # a point estimate without an interval: shown, never counted

PAPER = {
    "gift_beats_sft": ("GIFT beats SFT after RL (Table 1: average pass@1 59.55 vs 55.06 on Qwen2.5-7B, "
                       "42.96 vs 37.46 on Llama-3.1-8B; Table 2 OOD: 64.10 vs 59.78, 55.24 vs 46.97)."),
    "passk_advantage_grows": ("Before RL, GIFT's pass@k advantage over SFT grows with k (Table 3, Qwen2.5-7B: "
                              "−0.87 at k=1 → +3.80 at k=8; Llama-3.1-8B: +0.72 → +1.67)."),
    "gift_more_consistent": ("GIFT's updates are more consistent: higher last-layer cosine and lower L2 in both "
                             "stages and models, lower KL 'in most cases' (Table 4: 3 of 4; Llama Base→SFT "
                             "KL is higher for GIFT), higher top-K overlap (Figure 2)."),
    "gift_beats_unified": ("GIFT after RL surpasses the unified paradigms (§4: \"complex unified paradigms such as "
                           "LUFFY\"; Table 1, Qwen2.5-7B average pass@1: GIFT 59.55 vs LUFFY 56.69, ReLIFT 56.27; "
                           "Llama-3.1-8B's omitted for 'consistently poor performance'). Out of distribution "
                           "(Table 2) it is at 'parity' (64.10 vs 64.27 / 64.55), so only Table 1's benchmarks are "
                           "checked."),
}
TITLES = {
    "gift_beats_sft": "GIFT beats SFT after RL",
    "passk_advantage_grows": "GIFT's pass@k advantage grows with k (before RL)",
    "gift_more_consistent": "GIFT's updates are more consistent (higher cos / overlap, lower L2 / KL)",
    "gift_beats_unified": "GIFT beats the unified paradigms (LUFFY, ReLIFT) after RL",
}
# what a claim compares GIFT with (its report's column) and what it says when the inputs hold no such pair
AGAINST = {"gift_beats_unified": "unified"}
MISSING = {"gift_beats_unified": "No GIFT run and unified-paradigm run (unified.methods) of the same backbone in the "
                                 "inputs."}


ALPHA = 0.05


def _half_width(ci: Any) -> float | None:
    if not ci or len(ci) != 2 or any(c is None for c in ci):
        return None
    lo, hi = float(ci[0]), float(ci[1])
    if math.isnan(lo) or math.isnan(hi):
        return None
    return (hi - lo) / 2


def _noise(*half_widths: float | None) -> float | None:
    if any(h is None for h in half_widths):
        return None
    return math.sqrt(sum(h * h for h in half_widths))


def verdict(delta: float, noise: float | None, higher_is_better: bool = True) -> str:
    """``agree`` when Δ points the paper's way by more than ``noise`` (any amount when ``noise`` is
    None), ``disagree`` when the other way, else ``inconclusive`` (also for Δ = 0 or NaN)."""
    if delta is None or math.isnan(delta):
        return INCONCLUSIVE
    return interval_verdict(delta, delta, higher_is_better) if noise is None else \
        interval_verdict(delta - noise, delta + noise, higher_is_better)


def interval_verdict(lo: float, hi: float, higher_is_better: bool = True) -> str:
    """``agree`` when the interval [lo, hi] of Δ lies wholly on the paper's side of 0, ``disagree`` when wholly on
    the other, ``inconclusive`` when it touches or straddles 0 (or is NaN)."""
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if not higher_is_better:
        lo, hi = -hi, -lo
    if lo > 0:
        return AGREE
    if hi < 0:
        return DISAGREE
    return INCONCLUSIVE


def overall(checks: Sequence[Mapping[str, Any]]) -> str:
    """The claim's verdict from its tested checks (``untested`` ones have no interval to decide from)."""
    if not checks:
        return NO_DATA
    kinds = {c["verdict"] for c in checks if c.get("counted", True)} - {UNTESTED}
    if not kinds:
        return UNTESTED
    return kinds.pop() if len(kinds) == 1 else MIXED


@dataclass
class Evidence:
    """What one check's difference Δ (GIFT − the other run, in the metric's units) rests on; see the module
    docstring for the order of preference. ``seed_deltas``: Δ per shared seed; ``problem_deltas``: per-problem Δ of
    one seed, one list per benchmark (resampled within each; Δ is the mean of their means); ``pooled``: per-problem
    Δ, one row per seed (the nested bootstrap); ``example_sums``: one seed's per-example (sums, counts) of GIFT and
    of the other run, over the same examples (Δ of two token means); ``noise95``: the combined half-width of the two
    runs' 95% intervals."""

    delta: float
    higher_is_better: bool = True
    seed_deltas: list[float] | None = None
    problem_deltas: list[list[float]] | None = None
    pooled: list[list[float]] | None = None
    example_sums: tuple[list[float], list[float], list[float], list[float]] | None = None
    noise95: float | None = None
    note: str = ""

    @property
    def has_interval(self) -> bool:
        return ((self.seed_deltas is not None and len(self.seed_deltas) >= 2) or self.problem_deltas is not None
                or self.example_sums is not None or self.noise95 is not None)

    def decide(self, alpha: float, scale: float, digits: int) -> dict[str, str]:
        """The check's interval at level 1 − ``alpha`` (already Bonferroni's), its test and verdict; numbers times
        ``scale`` with ``digits`` decimals."""
        def fmt(lo, hi):
            return f"[{scale * lo:+.{digits}f}, {scale * hi:+.{digits}f}]"

        level = f"{100 * (1 - alpha):.2f}%".replace(".00%", "%")
        if self.seed_deltas is not None and len(self.seed_deltas) >= 2:
            summary = seed_interval(self.seed_deltas, alpha)
            lo, hi = summary["ci"]
            mean, sd = summary["mean"], summary["sd"]
            d_z = mean / sd if sd > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
            test = f"paired t over {summary['n']} seeds, d_z = {d_z:+.2f}"
            pooled = None
            if self.pooled is not None:
                pooled = nested_bootstrap_ci(self.pooled, resamples_for(alpha), alpha)  # as many as the others
                test += f"; pooled problems × seeds {fmt(*pooled)}"
            if sd == 0:  # every seed gave the same delta: the t interval has width 0 (discrete rates, few seeds)
                if pooled is not None:  # the problems' spread decides
                    (lo, hi), test = pooled, (f"{summary['n']} seeds, all with the same delta (t: no spread); "
                                              "pooled problems × seeds")
                else:
                    test += " (every seed the same delta: no spread)"
        elif self.problem_deltas is not None:
            lo, hi = stratified_bootstrap_ci(self.problem_deltas, resamples_for(alpha), alpha)
            groups = f" ({len(self.problem_deltas)} benchmarks, each resampled)" if len(self.problem_deltas) > 1 else ""
            test = f"paired bootstrap over {sum(map(len, self.problem_deltas))} problems{groups}"
        elif self.example_sums is not None:
            lo, hi = paired_ratio_bootstrap_ci(*self.example_sums, n_resamples=resamples_for(alpha), alpha=alpha)
            test = f"paired bootstrap over {len(self.example_sums[0])} validation examples (token means)"
        elif self.noise95 is not None:
            half = self.noise95 * NormalDist().inv_cdf(1 - alpha / 2) / NormalDist().inv_cdf(0.975)
            lo, hi = self.delta - half, self.delta + half
            test = "two 95% intervals combined, sqrt(h₁² + h₂²)"
        else:
            return {"interval": "—", "test": "point estimate, no interval", "verdict": UNTESTED}
        return {"interval": f"{fmt(lo, hi)} ({level})", "test": test + self.note,
                "verdict": interval_verdict(lo, hi, self.higher_is_better)}


def _cells(index: Mapping[tuple, Mapping[str, Any]], specs: RunSpecs) -> dict[tuple, dict[Any, Mapping[str, Any]]]:
    """Records by (backbone, cell, *rest) → {seed: record}: a cell's replicates over training seeds together (one
    record under seed None for a config without seeds)."""
    out: dict[tuple, dict[Any, Mapping[str, Any]]] = {}
    for key, rec in index.items():
        out.setdefault((key[0], specs.group(key[1]), *key[2:]), {})[specs.seed(key[1])] = rec
    return out


def _gift_pairs(cells: Mapping[tuple, Mapping[Any, Mapping]], specs: RunSpecs, against) -> list[tuple[tuple, tuple]]:
    """``(gift cell key, other cell key)`` for every GIFT cell and each other cell of the same backbone and rest
    that ``against(cell)`` accepts, in report order."""
    others = list(dict.fromkeys(k[1] for k in cells if against(k[1])))
    out = []
    for key in sorted(cells, key=lambda k: (k[0], specs.sort_key(k[1]), k[2:])):
        if specs.strategy(key[1]) != "gift":
            continue
        out += [(key, (key[0], other, *key[2:])) for other in sorted(others, key=specs.sort_key)
                if (key[0], other, *key[2:]) in cells]
    return out


def _shared(a: Mapping[Any, Mapping], b: Mapping[Any, Mapping]) -> list[tuple[Mapping, Mapping, Any]]:
    """(a's record, b's record, seed) for each seed both cells have (a config without seeds: the one pair)."""
    return [(a[seed], b[seed], seed) for seed in sorted(set(a) & set(b), key=lambda s: (s is None, s or 0))]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _finish(cid: str, pending: list[tuple[dict[str, Any], Evidence]], scale: float | None = 100.0) -> dict[str, Any]:
    """Decide every check of a claim at Bonferroni's level α / m (m = the claim's counted checks that have an interval;
    a detail row, ``counted: False``, is decided at the same level and left out of the verdict)."""
    alpha = simultaneous_alpha(ALPHA, sum(evidence.has_interval for row, evidence in pending
                                          if row.get("counted", True)))
    checks = []
    for row, evidence in pending:
        row.pop("_cell", None)
        digits = row.pop("_digits", 2)
        checks.append({**row, **evidence.decide(alpha, row.pop("_scale", scale), digits)})
    return _claim(cid, checks)


def _seed_mean(pairs, value) -> tuple[float, float]:
    return (sum(value(g) for g, _, _ in pairs) / len(pairs), sum(value(o) for _, o, _ in pairs) / len(pairs))


# ---------------------------------------------------------------- the claims

def _per_problem(counts: Mapping[str, tuple[int, int]], metric: str) -> dict[str, float]:
    """Each problem's unbiased ``pass@k`` from its (samples, correct), pass@1 as ``c / n`` exactly (claims 1 and 4
    read these; claim 2's growth uses the summaries' product form, :func:`giftlab.stats.per_problem_pass_at_k`)."""
    k = int(metric.split("@")[1])
    return {pid: (c / n if k == 1 else pass_at_k_single(n, c, k)) for pid, (n, c) in counts.items()}


def _pass1_checks(rl_summaries, metric, benchmarks, specs, against, samples, describe,
                  report_metric=None) -> list[tuple[dict, Evidence]]:
    """Claims 1 and 4: GIFT's post-RL ``metric`` against each accepted cell, per backbone × benchmark × β (or the
    cell's ``report_metric[backbone][benchmark]``: Table 1's Llama AIME at pass@32); ``samples``: per-problem
    (samples, correct) by (backbone, run, benchmark), for the paired test of any pass@k."""
    recs = [r for r in rl_summaries if job_field(r, "stage") == "rl"]
    if benchmarks is not None:
        recs = [r for r in recs if job_field(r, "benchmark") in set(benchmarks)]
    cells = _cells(index_records(recs, ("backbone", "run", "benchmark"), "claims"), specs)
    samples = samples or {}
    pending = []
    for gkey, okey in _gift_pairs(cells, specs, against):
        cell_metric = ((report_metric or {}).get(gkey[0]) or {}).get(gkey[2], metric)
        pairs = [(g, o, s) for g, o, s in _shared(cells[gkey], cells[okey])
                 if g.get(cell_metric) is not None and o.get(cell_metric) is not None]
        if not pairs:
            continue
        gift, other = _seed_mean(pairs, lambda r: float(r[cell_metric]))
        per_problem = [(samples.get(_key(g)), samples.get(_key(o))) for g, o, _ in pairs]
        problem_rows = None
        if cell_metric.startswith("pass@") and all(a is not None and b is not None for a, b in per_problem):
            per_problem = [(_per_problem(a, cell_metric), _per_problem(b, cell_metric)) for a, b in per_problem]
            ids = sorted(set.intersection(*[set(a) & set(b) for a, b in per_problem]))
            problem_rows = [[a[i] - b[i] for i in ids] for a, b in per_problem] if ids else None
        evidence = Evidence(gift - other)
        if len(pairs) >= 2:
            evidence.seed_deltas = [float(g[cell_metric]) - float(o[cell_metric]) for g, o, _ in pairs]
            evidence.pooled = problem_rows
        elif problem_rows is not None:
            evidence.problem_deltas = [problem_rows[0]]
        else:
            g, o, _ = pairs[0]
            evidence.noise95 = _noise(_half_width(g.get(f"{cell_metric}_ci95")),
                                      _half_width(o.get(f"{cell_metric}_ci95")))
        pending.append(({"backbone": gkey[0], "run": gkey[1], "other_run": okey[1], "seeds": _n_seeds(pairs),
                         "what": describe(gkey[2], okey[1], cell_metric), "gift": _pct(gift), "other": _pct(other),
                         "delta": f"{100 * (gift - other):+.2f}",
                         "_cell": {"benchmark": gkey[2], "gift": gift, "other": other, "problem_rows": problem_rows,
                                   "seed_deltas": {s: float(g[cell_metric]) - float(o[cell_metric])
                                                   for g, o, s in pairs},
                                   "noise95": _noise(_half_width(pairs[0][0].get(f"{cell_metric}_ci95")),
                                                     _half_width(pairs[0][1].get(f"{cell_metric}_ci95")))}},
                        evidence))
    return pending


def _average_checks(pending: list[tuple[dict, Evidence]], benchmarks: Sequence[str] | None, describe
                    ) -> list[tuple[dict, Evidence]]:
    """One check per (backbone, GIFT cell, other cell) of the mean over ``benchmarks`` (None: those present) of the
    per-benchmark checks in ``pending`` (each at its Table 1 metric, as the table's Average): per seed, paired over
    seeds; one seed with the samples, paired over problems resampled within each benchmark (the mean of the
    benchmarks' means); otherwise the benchmarks' combined intervals, sqrt(Σ h²) / B (different problems). A pair
    missing a benchmark has no Average (nor has the table's row)."""
    groups: dict[tuple, dict[str, dict]] = {}
    for row, _ in pending:
        groups.setdefault((row["backbone"], row["run"], row["other_run"]), {})[row["_cell"]["benchmark"]] = row
    out = []
    for (bb, run, other), rows in groups.items():
        wanted = list(benchmarks) if benchmarks is not None else sorted(rows)
        if not wanted or any(b not in rows for b in wanted):
            continue
        cells = [rows[b]["_cell"] for b in wanted]
        gift = sum(c["gift"] for c in cells) / len(cells)
        rival = sum(c["other"] for c in cells) / len(cells)
        evidence = Evidence(gift - rival)
        seeds = set.intersection(*[set(c["seed_deltas"]) for c in cells])
        if len(seeds) >= 2:
            evidence.seed_deltas = [sum(c["seed_deltas"][s] for c in cells) / len(cells)
                                    for s in sorted(seeds, key=lambda s: (s is None, s or 0))]
        elif all(c["problem_rows"] is not None for c in cells):
            evidence.problem_deltas = [c["problem_rows"][0] for c in cells]
        elif all(c["noise95"] is not None for c in cells):
            evidence.noise95 = math.sqrt(sum(c["noise95"] ** 2 for c in cells)) / len(cells)
        out.append(({"backbone": bb, "run": run, "other_run": other, "seeds": rows[wanted[0]]["seeds"],
                     "what": describe(other), "gift": _pct(gift), "other": _pct(rival),
                     "delta": f"{100 * (gift - rival):+.2f}", "counted": True}, evidence))
    return out


def _key(record: Mapping[str, Any]) -> tuple:
    return tuple(job_field(record, k) for k in ("backbone", "run", "benchmark"))


def _n_seeds(pairs) -> int:
    return sum(1 for *_, seed in pairs if seed is not None) or 1


def claim_gift_beats_sft(rl_summaries: Iterable[Mapping[str, Any]], metric: str = "pass@1",
                         run_specs=None, samples: Mapping[tuple, Mapping[str, tuple[int, int]]] | None = None,
                         report_metric: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """Claim 1 from post-RL evaluation summaries (stage ``rl``), per backbone × benchmark × GIFT β, at ``metric`` or
    the cell's ``report_metric`` (eval.report_metric: what Table 1 shows); ``samples``: per-problem (samples,
    correct) by (backbone, run, benchmark) (:func:`giftlab.reporting.rl_gain.per_problem_counts`), for the paired
    tests."""
    specs = RunSpecs(run_specs)
    pending = _pass1_checks(rl_summaries, metric, None, specs, lambda cell: specs.strategy(cell) == "sft", samples,
                            lambda bench, _, m: f"{bench} {m}", report_metric)
    for row, _ in pending:
        row["sft"] = row.pop("other")
        row.pop("other_run")
    return _finish("gift_beats_sft", pending)


def claim_gift_beats_unified(rl_summaries: Iterable[Mapping[str, Any]], metric: str = "pass@1",
                             benchmarks: Sequence[str] | None = None, run_specs=None,
                             samples: Mapping[tuple, Mapping[str, tuple[int, int]]] | None = None,
                             report_metric: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """Claim 4 from post-RL evaluation summaries (stage ``rl``), per backbone × benchmark × GIFT β × unified run
    (LUFFY, ReLIFT: which runs are those comes from ``run_specs``), with claim 1's tests. ``benchmarks``:
    Table 1's (the reasoning group; None: every benchmark present); on Table 2's the paper claims only parity."""
    specs = RunSpecs(run_specs)
    pending = _pass1_checks(rl_summaries, metric, benchmarks, specs, specs.is_unified, samples,
                            lambda bench, other, m: f"{bench} {m} vs {specs.label(other)}", report_metric)
    # §4 claims the Average (line 149: "surpassing ... complex unified paradigms such as LUFFY (56.69%)"), and the
    # paper's own Table 1 has GIFT below LUFFY on GSM8K: the benchmarks' checks are detail, the Average decides
    table1 = list(benchmarks) if benchmarks is not None else {row["_cell"]["benchmark"] for row, _ in pending}
    if len(table1) > 1:  # one benchmark (the tiny profiles' tiny_id): its check is the Average's, shown once
        averages = _average_checks(pending, benchmarks, lambda other: f"Average over Table 1 vs {specs.label(other)}")
        for row, _ in pending:
            row["counted"] = False
        pending += averages
    for row, _ in pending:
        row["against"] = row.pop("other_run")
    return _finish("gift_beats_unified", pending)


def _growth_per_problem(g: Mapping[str, tuple[int, int]], s: Mapping[str, tuple[int, int]], k_lo: int,
                        k_hi: int) -> list[float]:
    """Per problem both evaluations share: (GIFT − SFT) in unbiased pass@k_hi minus the same at k_lo."""
    ids = sorted(set(g) & set(s))

    def pk(counts, k):
        return per_problem_pass_at_k([counts[i] for i in ids], k)

    return list((pk(g, k_hi) - pk(s, k_hi)) - (pk(g, k_lo) - pk(s, k_lo))) if ids else []


def claim_passk_advantage_grows(pre_rl_summaries: Iterable[Mapping[str, Any]],
                                ks: Sequence[int] = (1, 2, 4, 8), run_specs=None,
                                samples: Mapping[tuple, Mapping[str, tuple[int, int]]] | None = None) -> dict[str, Any]:
    """Claim 2 from pre-RL summaries (stage ``sft``): per backbone × GIFT β, the advantage Δ_k = GIFT − SFT (mean
    over the shared benchmarks) at the largest available k minus at the smallest: per seed, paired over seeds;
    with one seed, paired over problems from ``samples`` (per-problem (n, correct) by (backbone, run, benchmark):
    :func:`giftlab.reporting.rl_gain.per_problem_counts`), else the pass@1 difference noise as its scale
    (heuristic, see the module docstring)."""
    samples = samples or {}
    specs = RunSpecs(run_specs)
    recs = [r for r in pre_rl_summaries if job_field(r, "stage") == "sft"]
    cells = _cells(index_records(recs, ("backbone", "run", "benchmark"), "claims"), specs)
    grouped: dict[tuple[str, str], dict[Any, list[tuple[Mapping, Mapping]]]] = {}
    for gkey, skey in _gift_pairs(cells, specs, lambda cell: specs.strategy(cell) == "sft"):
        for g, s, seed in _shared(cells[gkey], cells[skey]):
            grouped.setdefault((gkey[0], gkey[1]), {}).setdefault(seed, []).append((g, s))
    pending = []
    for (bb, run), per_seed in grouped.items():
        n_bench = min(len(pairs) for pairs in per_seed.values())
        avail = [k for k in sorted(ks) if all(g.get(f"pass@{k}") is not None and s.get(f"pass@{k}") is not None
                                             for pairs in per_seed.values() for g, s in pairs)]
        if len(avail) < 2:
            continue

        def advantage(pairs, k):
            return sum(float(g[f"pass@{k}"]) - float(s[f"pass@{k}"]) for g, s in pairs) / len(pairs)

        adv = {k: sum(advantage(p, k) for p in per_seed.values()) / len(per_seed) for k in avail}
        growths = [advantage(p, avail[-1]) - advantage(p, avail[0]) for p in per_seed.values()]
        evidence = Evidence(sum(growths) / len(growths))
        note = ""
        pairs = next(iter(per_seed.values()))
        counts = [(samples.get(_key(g)), samples.get(_key(s))) for g, s in pairs]
        if len(per_seed) >= 2:
            evidence.seed_deltas = growths
        elif all(a is not None and b is not None for a, b in counts):
            groups = [_growth_per_problem(a, b, avail[0], avail[-1]) for a, b in counts]
            if all(groups):  # the mean of the benchmarks' means, as the summaries' advantage
                evidence = Evidence(sum(sum(g) / len(g) for g in groups) / len(groups), problem_deltas=groups)
        if not evidence.has_interval:
            hws = [_noise(_half_width(g.get("pass@1_ci95")), _half_width(s.get("pass@1_ci95"))) for g, s in pairs]
            evidence.noise95 = None if any(h is None for h in hws) else sum(hws) / len(hws) / math.sqrt(len(pairs))
            note = " (pass@1 intervals as the scale: heuristic)"
        evidence.note = note
        pending.append(({"backbone": bb, "run": run, "seeds": len([s for s in per_seed if s is not None]) or 1,
                         "what": f"Δpass@{avail[-1]} − Δpass@{avail[0]} ({n_bench} benchmark(s))",
                         "gift": " ".join(f"k={k}:{100 * adv[k]:+.2f}" for k in avail), "sft": "(Δ = GIFT − SFT)",
                         "delta": f"{100 * evidence.delta:+.2f}"}, evidence))
    return _finish("passk_advantage_grows", pending)


def claim_gift_more_consistent(records: Iterable[Mapping[str, Any]], run_specs=None) -> dict[str, Any]:
    """Claim 3 from consistency results: per backbone × stage pair × GIFT β, cos (↑) and L2 (↓) (with ``cos_ci95`` /
    ``l2_ci95`` for the last layer's output, none for its parameters), KL (↓, with ``kl_ci95``) and top-K overlap
    (↑, with ``topk_overlap_ci95``); paired over seeds when there are several."""
    specs = RunSpecs(run_specs)
    cells = _cells(index_records(records, ("backbone", "run", "stage_pair"), "claims"), specs)
    pending = []
    for gkey, skey in _gift_pairs(cells, specs, lambda cell: specs.strategy(cell) == "sft"):
        pairs = _shared(cells[gkey], cells[skey])
        if not pairs:  # no training seed in common: nothing to pair (as claims 1 and 4)
            continue
        pair = STAGE_PAIRS.get(gkey[2], gkey[2])
        # (name, higher is better, has an interval, value, its 95% interval, its per-example sums' key)
        metrics = [(m, higher, ci, lambda r, m=m: r.get(m), lambda r, c=ci: r.get(c) if c else None, sums)
                   for m, higher, ci, sums in (("cos", True, "cos_ci95", "hidden_cos"),
                                               ("l2", False, "l2_ci95", "hidden_l2"), ("kl", False, "kl_ci95", "kl"))]
        common_k = set.intersection(*[set(g.get("topk_overlap") or {}) & set(s.get("topk_overlap") or {})
                                      for g, s, _ in pairs])
        metrics += [(f"top-{k} overlap", True, "ci", lambda r, k=k: (r.get("topk_overlap") or {}).get(k),
                     lambda r, k=k: (r.get("topk_overlap_ci95") or {}).get(k), f"top{k}")
                    for k in sorted(common_k, key=int)]
        for name, higher, ci_key, value, ci, sums_key in metrics:
            if any(value(g) is None or value(s) is None for g, s, _ in pairs):
                continue
            gift, sft = _seed_mean(pairs, lambda r: float(value(r)))
            evidence = Evidence(gift - sft, higher_is_better=higher)
            if len(pairs) >= 2:
                evidence.seed_deltas = [float(value(g)) - float(value(s)) for g, s, _ in pairs]
            elif ci_key is not None:
                g, s, _ = pairs[0]
                evidence.example_sums = _example_sums(g, s, sums_key)
                if evidence.example_sums is None:
                    evidence.noise95 = _noise(_half_width(ci(g)), _half_width(ci(s)))
            d = 2 if name == "l2" else 4
            label = f"{pair} {name} ({'↑' if higher else '↓'})"
            pending.append(({"backbone": gkey[0], "run": gkey[1], "seeds": _n_seeds(pairs), "what": label,
                             "gift": f"{gift:.{d}f}", "sft": f"{sft:.{d}f}", "delta": f"{gift - sft:+.{d}f}",
                             "_scale": 1.0, "_digits": d}, evidence))
    return _finish("gift_more_consistent", pending)


def _example_sums(gift: Mapping[str, Any], other: Mapping[str, Any], key: str):
    """(GIFT's sums, counts, the other run's sums, counts) per validation example for metric ``key`` when both
    results hold them over the same examples (the same tokenised examples: ``examples_sha256``), else None. cos and
    L2 have them only as the last layer's output (``geometry: hidden``); the parameters' are one number per
    checkpoint."""
    if key.startswith("hidden_") and not all(r.get("geometry", "hidden") == "hidden" for r in (gift, other)):
        return None
    a, b = gift.get("per_example") or {}, other.get("per_example") or {}
    if key not in a or key not in b or a.get("n_tokens") is None or a.get("n_tokens") != b.get("n_tokens"):
        return None
    if a.get("examples_sha256") != b.get("examples_sha256"):  # other rows, or the same rows tokenised otherwise
        return None
    return a[key], a["n_tokens"], b[key], b["n_tokens"]


def _claim(cid: str, checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": cid, "title": TITLES[cid], "paper": PAPER[cid], "verdict": overall(checks), "checks": checks,
            "against": AGAINST.get(cid, "SFT"), "missing": MISSING.get(cid, "No GIFT–SFT pair in the inputs.")}


def evaluate_claims(rl_summaries: Iterable[Mapping[str, Any]] = (),
                    pre_rl_summaries: Iterable[Mapping[str, Any]] = (),
                    consistency: Iterable[Mapping[str, Any]] = (), run_specs=None,
                    reasoning_benchmarks: Sequence[str] | None = None,
                    samples: Mapping[tuple, Mapping[str, tuple[int, int]]] | None = None,
                    pre_rl_samples: Mapping[tuple, Mapping[str, tuple[int, int]]] | None = None,
                    report_metric: Mapping[str, Mapping[str, str]] | None = None) -> list[dict[str, Any]]:
    """All four claims as ``[{"id", "title", "paper", "verdict", "checks": [...]}, ...]``; ``run_specs``: the
    plan's run table (which runs are GIFT, plain SFT or a unified paradigm, and their seeds); ``reasoning_benchmarks``:
    Table 1's benchmarks, the ones claim 4 checks (None: all); ``samples`` / ``pre_rl_samples``: per-problem
    (samples, correct) of the post-RL / pre-RL evaluations by (backbone, run, benchmark), for the paired tests of
    claims 1 and 4 / claim 2; ``report_metric``: eval.report_metric, the cells claims 1 and 4 judge at another
    pass@k, as Table 1 shows them."""
    rl_summaries = list(rl_summaries)
    return [claim_gift_beats_sft(rl_summaries, run_specs=run_specs, samples=samples, report_metric=report_metric),
            claim_passk_advantage_grows(pre_rl_summaries, run_specs=run_specs, samples=pre_rl_samples),
            claim_gift_more_consistent(consistency, run_specs=run_specs),
            claim_gift_beats_unified(rl_summaries, benchmarks=reasoning_benchmarks, run_specs=run_specs,
                                     samples=samples, report_metric=report_metric)]


LEGEND = ("Each check is a paired difference Δ = GIFT − the other run, decided from its interval: **agree** / "
          "**disagree** = the whole interval lies on the paper's side of 0 / on the other side; **inconclusive** = "
          "it straddles 0; **mixed** = a claim's checks differ; **untested** = a point estimate with no interval "
          "(the last layer's parameters' cos and L2, one seed: exact for these two checkpoints, but one seed "
          "cannot measure how they vary with training), counted neither in the claim's verdict nor in its m. The "
          "test: over training seeds when there are several (Student's t of the per-seed differences, effect size "
          "d_z = mean / sd; for pass@1 the pooled problems × seeds bootstrap beside it), else paired over problems "
          "(bootstrap of the per-problem differences; claim 2: the per-problem growth of the pass@k advantage, "
          "resampled within each benchmark), claim 3 paired over validation examples (bootstrap of the difference "
          "of the two token means); without such data, the two runs' 95% intervals combined as sqrt(h₁² + h₂²). "
          "With one seed an interval covers the evaluation's noise for these two checkpoints only, not what "
          "another training seed would give (config `seeds`, e.g. config/replication.yaml, tests that). "
          "Multiplicity: each claim's intervals are Bonferroni's, at level 1 − 0.05/m for its m checks (the level "
          "is printed with each interval). Pass rates in %.")


def claims_markdown(claims: Sequence[Mapping[str, Any]], run_specs=None) -> str:
    specs = RunSpecs(run_specs)
    lines = ["# Paper claims vs this run", "", LEGEND, ""]
    for c in claims:
        lines += [f"## {c['title']}: **{c['verdict']}**", "", f"Paper: {c['paper']}", ""]
        if not c["checks"]:
            lines += [c.get("missing", "No GIFT–SFT pair in the inputs."), ""]
            continue
        lines += [f"| backbone | GIFT run | seeds | comparison | GIFT | {c.get('against', 'SFT')} | Δ | interval | test "
                  "| verdict |",
                  "| :--- | :--- | ---: | :--- | ---: | ---: | ---: | :--- | :--- | :--- |"]
        for ch in c["checks"]:
            verdict_cell = ch["verdict"] if ch.get("counted", True) else f"{ch['verdict']} (detail, not counted)"
            cells = [ch["backbone"], specs.label(ch["run"]), ch["seeds"], ch["what"], ch["gift"],
                     ch.get("sft", ch.get("other")), ch["delta"], ch["interval"], ch["test"], verdict_cell]
            lines.append("| " + " | ".join(str(x).replace("|", r"\|") for x in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_claims(path: str | Path, rl_summaries: Iterable[Mapping[str, Any]] = (),
                 pre_rl_summaries: Iterable[Mapping[str, Any]] = (),
                 consistency: Iterable[Mapping[str, Any]] = (), run_specs=None,
                 reasoning_benchmarks: Sequence[str] | None = None,
                 samples: Mapping[tuple, Mapping[str, tuple[int, int]]] | None = None,
                 pre_rl_samples: Mapping[tuple, Mapping[str, tuple[int, int]]] | None = None,
                 report_metric: Mapping[str, Mapping[str, str]] | None = None) -> list[dict[str, Any]]:
    """Evaluate the claims and write them as markdown (atomically); return the claim dicts."""
    claims = evaluate_claims(rl_summaries, pre_rl_summaries, consistency, run_specs, reasoning_benchmarks, samples,
                             pre_rl_samples, report_metric)
    write_text_atomic(path, claims_markdown(claims, run_specs))
    return claims
