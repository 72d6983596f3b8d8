"""Does THIS run agree with the paper? One verdict per claim, written as markdown.

Claims checked (each per backbone and per GIFT β, against plain SFT of the same backbone; claim 4 against each
unified-paradigm run of the same backbone):

1. ``gift_beats_sft``: after RL, GIFT's pass@1 is higher than SFT's (Tables 1, 2).
2. ``passk_advantage_grows``: before RL, GIFT − SFT in pass@k grows with k (Table 3).
3. ``gift_more_consistent``: GIFT's updates are more consistent — higher last-layer cos, lower L2,
   lower KL, higher top-K overlap — for Base→SFT and SFT→RL (Table 4, Figure 2).
4. ``gift_beats_unified``: after RL, GIFT's pass@1 is higher than that of the unified paradigms (LUFFY, ReLIFT:
   RL from the base model with demonstrations) on Table 1's benchmarks; the paper reports parity on Table 2's.

A check's verdict is ``agree`` / ``disagree`` / ``inconclusive``. With a noise scale (from the
bootstrap CIs in the inputs) the difference Δ must exceed it: ``agree`` when Δ points the paper's
way by more than the noise, ``disagree`` when it points the other way by more than the noise,
``inconclusive`` otherwise. The noise of a difference of two independently reported estimates is
``sqrt(h_gift² + h_sft²)`` with ``h`` the half-width of each 95% interval (conservative for these
paired designs: both models see the same problems). Claim 2 has no CI for pass@k (k > 1), so
the pass@1 noise of the two runs is used as the scale of the change in advantage — a heuristic,
said so in the report. Cos and L2 are exact functions of the two checkpoints (no sampling noise;
seed-to-seed variation is not measured by one run), so their verdict is the sign of Δ, marked
"point estimate". A claim's overall verdict: ``agree`` / ``disagree`` / ``inconclusive`` when all its
checks say so, ``mixed`` otherwise, ``no data`` when the inputs hold no GIFT–SFT pair (claim 4: no GIFT and
unified-paradigm run of the same backbone, e.g. ``unified.methods`` is empty).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from giftlab.io import write_text_atomic
from giftlab.reporting.runs import RunSpecs
from giftlab.reporting.tables import STAGE_PAIRS, job_field

AGREE, DISAGREE, INCONCLUSIVE, MIXED, NO_DATA = "agree", "disagree", "inconclusive", "mixed", "no data"

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
    signed = delta if higher_is_better else -delta
    threshold = 0.0 if noise is None else noise
    if signed > threshold:
        return AGREE
    if signed < -threshold:
        return DISAGREE
    return INCONCLUSIVE


def overall(checks: Sequence[Mapping[str, Any]]) -> str:
    if not checks:
        return NO_DATA
    kinds = {c["verdict"] for c in checks}
    return kinds.pop() if len(kinds) == 1 else MIXED


def _gift_sft_pairs(index: Mapping[tuple, Mapping[str, Any]], specs: RunSpecs) -> list[tuple[tuple, str, tuple]]:
    """``(gift_key, gift_run, sft_key)`` for every GIFT record whose plain-SFT counterpart exists.
    Keys are ``(backbone, run, *rest)``; which run is GIFT and which plain SFT comes from ``specs``."""
    sft_runs = [r for r in specs.table if specs.strategy(r) == "sft"]
    out = []
    for key in sorted(index, key=lambda k: (k[0], specs.sort_key(k[1]), k[2:])):
        bb, run, rest = key[0], key[1], key[2:]
        if specs.strategy(run) != "gift":
            continue
        for sft in sft_runs:
            if (bb, sft, *rest) in index:
                out.append((key, run, (bb, sft, *rest)))
    return out


def _index(records: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> dict[tuple, Mapping[str, Any]]:
    out = {}
    for rec in records:
        key = tuple(job_field(rec, k) for k in keys)
        if None in key:
            raise ValueError(f"claims: record lacks one of {', '.join(keys)}")
        if key in out:
            raise ValueError(f"claims: two records for {dict(zip(keys, key))}")
        out[key] = rec
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


# ---------------------------------------------------------------- the claims

def claim_gift_beats_sft(rl_summaries: Iterable[Mapping[str, Any]], metric: str = "pass@1",
                         run_specs=None) -> dict[str, Any]:
    """Claim 1 from post-RL evaluation summaries (stage ``rl``), per backbone × benchmark × GIFT β."""
    recs = [r for r in rl_summaries if job_field(r, "stage") == "rl"]
    idx = _index(recs, ("backbone", "run", "benchmark"))
    checks = []
    for gkey, run, skey in _gift_sft_pairs(idx, RunSpecs(run_specs)):
        g, s = idx[gkey], idx[skey]
        if g.get(metric) is None or s.get(metric) is None:
            continue
        delta = float(g[metric]) - float(s[metric])
        noise = _noise(_half_width(g.get(f"{metric}_ci95")), _half_width(s.get(f"{metric}_ci95")))
        checks.append({
            "backbone": gkey[0], "run": run, "what": f"{gkey[2]} {metric}",
            "gift": _pct(float(g[metric])), "sft": _pct(float(s[metric])), "delta": f"{100 * delta:+.2f}",
            "noise": "no CI (point estimate)" if noise is None else f"±{_pct(noise)}",
            "verdict": verdict(delta, noise),
        })
    return _claim("gift_beats_sft", checks)


def claim_gift_beats_unified(rl_summaries: Iterable[Mapping[str, Any]], metric: str = "pass@1",
                             benchmarks: Sequence[str] | None = None, run_specs=None) -> dict[str, Any]:
    """Claim 4 from post-RL evaluation summaries (stage ``rl``), per backbone × benchmark × GIFT β × unified run
    (LUFFY, ReLIFT: which runs are those comes from ``run_specs``), with claim 1's verdict rule. ``benchmarks``:
    Table 1's (the reasoning group; None: every benchmark present); on Table 2's the paper claims only parity."""
    specs = RunSpecs(run_specs)
    recs = [r for r in rl_summaries if job_field(r, "stage") == "rl"]
    if benchmarks is not None:
        recs = [r for r in recs if job_field(r, "benchmark") in set(benchmarks)]
    idx = _index(recs, ("backbone", "run", "benchmark"))
    unified = sorted({k[1] for k in idx if specs.is_unified(k[1])}, key=specs.sort_key)
    checks = []
    for gkey in sorted(idx, key=lambda k: (k[0], specs.sort_key(k[1]), k[2:])):
        bb, run, bench = gkey
        if specs.strategy(run) != "gift":
            continue
        for other in unified:
            g, u = idx[gkey], idx.get((bb, other, bench))
            if u is None or g.get(metric) is None or u.get(metric) is None:
                continue
            delta = float(g[metric]) - float(u[metric])
            noise = _noise(_half_width(g.get(f"{metric}_ci95")), _half_width(u.get(f"{metric}_ci95")))
            checks.append({
                "backbone": bb, "run": run, "against": other, "what": f"{bench} {metric} vs {specs.label(other)}",
                "gift": _pct(float(g[metric])), "other": _pct(float(u[metric])), "delta": f"{100 * delta:+.2f}",
                "noise": "no CI (point estimate)" if noise is None else f"±{_pct(noise)}",
                "verdict": verdict(delta, noise),
            })
    return _claim("gift_beats_unified", checks)


def claim_passk_advantage_grows(pre_rl_summaries: Iterable[Mapping[str, Any]],
                                ks: Sequence[int] = (1, 2, 4, 8), run_specs=None) -> dict[str, Any]:
    """Claim 2 from pre-RL summaries (stage ``sft``): per backbone × GIFT β, the advantage
    Δ_k = GIFT − SFT (mean over the shared benchmarks) at the largest available k minus at the
    smallest; noise scale = the pass@1 difference noise (heuristic, see the module docstring)."""
    recs = [r for r in pre_rl_summaries if job_field(r, "stage") == "sft"]
    idx = _index(recs, ("backbone", "run", "benchmark"))
    grouped: dict[tuple[str, str], list[tuple[Mapping, Mapping]]] = {}
    for gkey, run, skey in _gift_sft_pairs(idx, RunSpecs(run_specs)):
        grouped.setdefault((gkey[0], run), []).append((idx[gkey], idx[skey]))
    checks = []
    for (bb, run), pairs in grouped.items():
        avail = [k for k in sorted(ks) if all(g.get(f"pass@{k}") is not None and s.get(f"pass@{k}") is not None
                                             for g, s in pairs)]
        if len(avail) < 2:
            continue
        adv = {k: sum(float(g[f"pass@{k}"]) - float(s[f"pass@{k}"]) for g, s in pairs) / len(pairs)
               for k in avail}
        growth = adv[avail[-1]] - adv[avail[0]]
        hws = [_noise(_half_width(g.get("pass@1_ci95")), _half_width(s.get("pass@1_ci95"))) for g, s in pairs]
        noise = None if any(h is None for h in hws) else sum(hws) / len(hws) / math.sqrt(len(pairs))
        checks.append({
            "backbone": bb, "run": run,
            "what": f"Δpass@{avail[-1]} − Δpass@{avail[0]} ({len(pairs)} benchmark(s))",
            "gift": " ".join(f"k={k}:{100 * adv[k]:+.2f}" for k in avail), "sft": "(Δ = GIFT − SFT)",
            "delta": f"{100 * growth:+.2f}",
            "noise": "no CI (point estimate)" if noise is None else f"±{_pct(noise)} (pass@1 CI as proxy)",
            "verdict": verdict(growth, noise),
        })
    return _claim("passk_advantage_grows", checks)


def claim_gift_more_consistent(records: Iterable[Mapping[str, Any]], run_specs=None) -> dict[str, Any]:
    """Claim 3 from consistency results: per backbone × stage pair × GIFT β, cos (↑, point
    estimate), L2 (↓, point estimate), KL (↓, with ``kl_ci95``) and top-K overlap (↑, with
    ``topk_overlap_ci95``)."""
    idx = _index(records, ("backbone", "run", "stage_pair"))
    checks = []
    for gkey, run, skey in _gift_sft_pairs(idx, RunSpecs(run_specs)):
        g, s = idx[gkey], idx[skey]
        pair = STAGE_PAIRS.get(gkey[2], gkey[2])
        for metric, higher, ci_key in (("cos", True, None), ("l2", False, None), ("kl", False, "kl_ci95")):
            if g.get(metric) is None or s.get(metric) is None:
                continue
            delta = float(g[metric]) - float(s[metric])
            noise = None if ci_key is None else _noise(_half_width(g.get(ci_key)), _half_width(s.get(ci_key)))
            d = 2 if metric == "l2" else 4
            checks.append({
                "backbone": gkey[0], "run": run, "what": f"{pair} {metric} ({'↑' if higher else '↓'})",
                "gift": f"{float(g[metric]):.{d}f}", "sft": f"{float(s[metric]):.{d}f}", "delta": f"{delta:+.{d}f}",
                "noise": ("point estimate" if ci_key is None else
                          ("no CI (point estimate)" if noise is None else f"±{noise:.4f}")),
                "verdict": verdict(delta, noise, higher_is_better=higher),
            })
        go, so = g.get("topk_overlap") or {}, s.get("topk_overlap") or {}
        gci, sci = g.get("topk_overlap_ci95") or {}, s.get("topk_overlap_ci95") or {}
        for k in sorted(set(go) & set(so), key=lambda x: int(x)):
            delta = float(go[k]) - float(so[k])
            noise = _noise(_half_width(gci.get(k)), _half_width(sci.get(k)))
            checks.append({
                "backbone": gkey[0], "run": run, "what": f"{pair} top-{k} overlap (↑)",
                "gift": f"{float(go[k]):.4f}", "sft": f"{float(so[k]):.4f}", "delta": f"{delta:+.4f}",
                "noise": "no CI (point estimate)" if noise is None else f"±{noise:.4f}",
                "verdict": verdict(delta, noise),
            })
    return _claim("gift_more_consistent", checks)


def _claim(cid: str, checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": cid, "title": TITLES[cid], "paper": PAPER[cid], "verdict": overall(checks), "checks": checks,
            "against": AGAINST.get(cid, "SFT"), "missing": MISSING.get(cid, "No GIFT–SFT pair in the inputs.")}


def evaluate_claims(rl_summaries: Iterable[Mapping[str, Any]] = (),
                    pre_rl_summaries: Iterable[Mapping[str, Any]] = (),
                    consistency: Iterable[Mapping[str, Any]] = (), run_specs=None,
                    reasoning_benchmarks: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """All four claims as ``[{"id", "title", "paper", "verdict", "checks": [...]}, ...]``; ``run_specs``: the
    plan's run table (which runs are GIFT, plain SFT or a unified paradigm); ``reasoning_benchmarks``: Table 1's
    benchmarks, the ones claim 4 checks (None: all)."""
    rl_summaries = list(rl_summaries)
    return [claim_gift_beats_sft(rl_summaries, run_specs=run_specs),
            claim_passk_advantage_grows(pre_rl_summaries, run_specs=run_specs),
            claim_gift_more_consistent(consistency, run_specs=run_specs),
            claim_gift_beats_unified(rl_summaries, benchmarks=reasoning_benchmarks, run_specs=run_specs)]


def claims_markdown(claims: Sequence[Mapping[str, Any]], run_specs=None) -> str:
    specs = RunSpecs(run_specs)
    lines = ["# Paper claims vs this run", "",
             "Verdicts: **agree** / **disagree** = the difference points the paper's way / the other way by "
             "more than its noise (95% bootstrap CIs combined as sqrt(h₁² + h₂²)); **inconclusive** = within "
             "noise; **mixed** = checks differ; cos and L2 are point estimates (no CI). Pass rates in %.", ""]
    for c in claims:
        lines += [f"## {c['title']}: **{c['verdict']}**", "", f"Paper: {c['paper']}", ""]
        if not c["checks"]:
            lines += [c.get("missing", "No GIFT–SFT pair in the inputs."), ""]
            continue
        lines += [f"| backbone | GIFT run | comparison | GIFT | {c.get('against', 'SFT')} | Δ | noise | verdict |",
                  "| :--- | :--- | :--- | ---: | ---: | ---: | :--- | :--- |"]
        for ch in c["checks"]:
            cells = [ch["backbone"], specs.label(ch["run"]), ch["what"], ch["gift"], ch.get("sft", ch.get("other")),
                     ch["delta"], ch["noise"], ch["verdict"]]
            lines.append("| " + " | ".join(str(x).replace("|", r"\|") for x in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_claims(path: str | Path, rl_summaries: Iterable[Mapping[str, Any]] = (),
                 pre_rl_summaries: Iterable[Mapping[str, Any]] = (),
                 consistency: Iterable[Mapping[str, Any]] = (), run_specs=None,
                 reasoning_benchmarks: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Evaluate the claims and write them as markdown (atomically); return the claim dicts."""
    claims = evaluate_claims(rl_summaries, pre_rl_summaries, consistency, run_specs, reasoning_benchmarks)
    write_text_atomic(path, claims_markdown(claims, run_specs))
    return claims
