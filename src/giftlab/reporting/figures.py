"""Paper figures drawn from small metric files written by earlier rules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from giftlab.grid import COMPARED_METHODS, STAGE_PAIRS  # noqa: E402
from giftlab.reporting import paper_numbers as pn  # noqa: E402
from giftlab.reporting.runs import RunSpecs, beta_or_inf  # noqa: E402
from giftlab.reporting.tables import check_rates, job_field  # noqa: E402
from giftlab.stats import seed_interval  # noqa: E402


def _save(fig, pdf: str | Path, png: str | Path) -> None:
    """Write both formats through temporary names so a killed job leaves no complete-looking figure."""
    for path in (Path(pdf), Path(png)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        tmp.replace(path)
    plt.close(fig)


# Figure 2 draws Llama-3.1-8B's panel left of Qwen2.5-7B's (its caption), and Figure 3 alike (Appendix C names Llama
# first); Figure 1's panels are config figures.fig1.backbones in its order (paper.yaml: Llama's first, as its caption)
PAPER_FIGURE_BACKBONES = ("Llama-3.1-8B", "Qwen2.5-7B")


def _paper_panels(backbones: Sequence[str]) -> list[str]:
    """Panels left to right: the paper's backbones in its figures' order, any other after them."""
    return pn.in_paper_order(list(backbones), PAPER_FIGURE_BACKBONES, pn.as_paper_backbone)


def _by_backbone(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """Group result records by (backbone, run), read from the job config in their provenance."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for rec in records:
        job = rec["provenance"]["config"]
        out.setdefault(job["backbone"], {})[job["run"]] = rec
    return out


def fig1_data(sft_metrics: Sequence[Mapping[str, Any]], rl_evals: Sequence[Mapping[str, Any]],
              benchmarks: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per backbone: validation-loss curves per SFT cell (``{"epoch": [...], "val_loss": [...]}``), and post-RL
    pass@1 (with CI) per β.

    pass@1 is the mean over ``benchmarks`` (default: every benchmark of the backbone's ``rl_evals``); a run missing
    one of them has pass@1 and interval NaN and names them in ``missing`` (not drawn: the mean of the others is not
    the panel's mean).

    A cell is a (method, β) of the grid; its replicates over training seeds (config ``seeds``: same method and β,
    another ``seed`` in the job config) are averaged: the loss curve epoch by epoch (at the epochs all of them
    reached) and pass@1 over seeds, each with the seed-level 95% interval as ``ci``
    (:func:`giftlab.stats.seed_interval`; ``n_seeds`` says how many). A cell of one run keeps its own curve and
    :func:`mean_pass1`'s interval."""
    data: dict[str, dict[str, Any]] = {}
    for bb, runs in _by_backbone(sft_metrics).items():
        cells: dict[str, list[Mapping[str, Any]]] = {}
        for run, m in sorted(runs.items()):
            cells.setdefault(_cell_name(m["provenance"]["config"], run), []).append(m)
        data.setdefault(bb, {})["val_loss"] = {
            cell: _mean_over_seeds([{"epoch": [e["epoch"] for e in m["epochs"]],
                                     "val_loss": [e["val_loss"] for e in m["epochs"]]} for m in members],
                                   "epoch", "val_loss")
            for cell, members in cells.items()}
        data[bb]["methods"] = {cell: _method_beta(members[0]["provenance"]["config"])
                               for cell, members in cells.items()}
    trained = {(rec["provenance"]["config"]["backbone"], rec["provenance"]["config"]["run"]): rec["provenance"]["config"]
               for rec in sft_metrics}  # each SFT run's job: its method, β and seed
    grouped: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for rec in rl_evals:
        job = rec["provenance"]["config"]
        check_rates(rec, f"figure 1: {job.get('backbone')}/{job.get('run')}/{job.get('benchmark')}")
        if benchmarks is None or job["benchmark"] in benchmarks:
            grouped.setdefault(job["backbone"], {}).setdefault(job["run"], []).append(rec)
    for bb, runs in grouped.items():
        wanted = (set(benchmarks) if benchmarks is not None
                  else {s["provenance"]["config"]["benchmark"] for ss in runs.values() for s in ss})
        per_cell: dict[tuple, list[dict[str, Any]]] = {}
        for run, summaries in sorted(runs.items()):
            method, beta = _method_beta(trained.get((bb, run), {}))
            have = sorted(s["provenance"]["config"]["benchmark"] for s in summaries)
            missing = sorted(wanted - set(have))
            value = ({"pass@1": math.nan, "ci": [math.nan, math.nan], "missing": missing} if missing
                     else mean_pass1(summaries))
            per_cell.setdefault((method, beta), []).append(
                {"run": run, "method": method, "beta": beta, "benchmarks": have, **value})
        points = []
        for (method, beta), members in per_cell.items():
            if len(members) == 1:
                points.append({**members[0], "n_seeds": 1})
                continue
            if any(p.get("missing") for p in members):  # a replicate without a full mean: the cell has none
                points.append({**members[0], "pass@1": math.nan, "ci": [math.nan, math.nan], "n_seeds": len(members),
                               "missing": sorted({b for p in members for b in p.get("missing", [])}),
                               "run": _cell_name(trained.get((bb, members[0]["run"]), {}), members[0]["run"]),
                               "seed_runs": [p["run"] for p in members]})
                continue
            summary = seed_interval([p["pass@1"] for p in members])
            points.append({"run": _cell_name(trained.get((bb, members[0]["run"]), {}), members[0]["run"]),
                           "method": method, "beta": beta, "benchmarks": members[0]["benchmarks"],
                           "pass@1": summary["mean"], "ci": summary["ci"], "n_seeds": summary["n"],
                           "seed_runs": [p["run"] for p in members]})
        data.setdefault(bb, {})["rl_pass1"] = sorted(points, key=lambda p: p["beta"])
    return data


def _method_beta(job: Mapping[str, Any]) -> tuple[str | None, float]:
    """A job config's method and plotting β."""
    return job.get("method"), beta_or_inf(job.get("beta"))


def _cell_name(job: Mapping[str, Any], run: str) -> str:
    """A cell's legend name: the run's, or for a replicate over seeds the plain run id of its cell (made by
    giftlab.grid.run_name from the job's method and β, never parsed from the run id)."""
    if job.get("method") is None:
        return run
    from giftlab.grid import run_name

    return run_name(job["method"], job.get("beta"))


def mean_pass1(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """pass@1 averaged over benchmarks (the paper's "pass@1 on the mathematical reasoning benchmarks"), with a 95%
    interval: one benchmark keeps its bootstrap interval; for several, each interval's half-width / 1.96 is taken
    as that benchmark's standard error, and independent errors add in quadrature (different problems)."""
    if len(summaries) == 1:
        only = summaries[0]
        return {"pass@1": only["pass@1"], "ci": only.get("pass@1_ci95") or [math.nan, math.nan]}
    m = len(summaries)
    mean = sum(s["pass@1"] for s in summaries) / m
    cis = [s.get("pass@1_ci95") for s in summaries]
    if any(ci is None for ci in cis):
        return {"pass@1": mean, "ci": [math.nan, math.nan]}
    half = 1.96 * math.sqrt(sum(((hi - lo) / (2 * 1.96)) ** 2 for lo, hi in cis)) / m
    return {"pass@1": mean, "ci": [mean - half, mean + half]}


def figure1(sft_metrics, rl_evals, backbones: Sequence[str], pdf, png, benchmarks: Sequence[str]) -> dict:
    """Figure 1: (top) SFT validation loss per epoch; (bottom) post-RL pass@1 across β, averaged over
    ``benchmarks`` (the math benchmarks, :func:`mean_pass1`).

    Plain SFT is drawn as the β → ∞ reference line with its interval.
    """
    on = benchmarks[0] if len(benchmarks) == 1 else f"mean of {len(benchmarks)} math benchmarks"
    data = fig1_data(sft_metrics, rl_evals, benchmarks)
    fig, axes = plt.subplots(2, len(backbones), figsize=(4.2 * len(backbones), 6.4), squeeze=False)
    for col, bb in enumerate(backbones):
        ax = axes[0][col]
        methods = data.get(bb, {}).get("methods", {})
        for run, curve in sorted(data.get(bb, {}).get("val_loss", {}).items(),
                                 key=lambda kv: methods.get(kv[0], (None, math.inf))[1]):
            style = dict(color="black", lw=2) if methods.get(run, (None,))[0] == "sft" else dict(lw=1.2)
            line, = ax.plot(curve["epoch"], curve["val_loss"], marker="o", label=run, **style)
            if "ci" in curve:  # replicates over seeds: their 95% t-interval epoch by epoch
                ax.fill_between(curve["epoch"], *zip(*curve["ci"]), color=line.get_color(), alpha=0.12, lw=0)
        seeds = max((c.get("n_seeds", 1) for c in data.get(bb, {}).get("val_loss", {}).values()), default=1)
        ax.set(title=f"({chr(97 + col)}) {bb}: SFT validation loss" + (f" (mean of {seeds} seeds, 95% t-interval)"
                                                                         if seeds > 1 else ""),
               xlabel="epoch", ylabel="val CE (nats/token)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(fontsize=7)
        ax = axes[1][col]
        points = [p for p in data.get(bb, {}).get("rl_pass1", []) if not math.isnan(p["pass@1"])]  # NaN: missing
        gift = [p for p in points if p["method"] == "gift"]
        if gift:
            xs = [p["beta"] for p in gift]
            ys = [p["pass@1"] for p in gift]
            err = [[y - p["ci"][0] for y, p in zip(ys, gift)], [p["ci"][1] - y for y, p in zip(ys, gift)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label="GIFT")
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.set_xlim(min(xs) * 0.5 if min(xs) > 0 else -0.5, max(xs) * 2)
        for p in points:
            if p["method"] == "sft":
                ax.axhline(p["pass@1"], color="black", ls="--", label="SFT (β→∞)")
                if not any(math.isnan(c) for c in p["ci"]):
                    ax.axhspan(p["ci"][0], p["ci"][1], color="black", alpha=0.08)
        seeds = max((p.get("n_seeds", 1) for p in points), default=1)
        this_panel = on + (f"; mean of {seeds} seeds, 95% t-interval" if seeds > 1 else "")  # its own points' seeds
        ax.set(title=f"({chr(97 + len(backbones) + col)}) {bb}: pass@1 after RL ({this_panel})",
               xlabel="β (inverse temperature)", ylabel="pass@1")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, pdf, png)
    return data


# ---------------------------------------------------------------- Figures 2 and 3: SFT vs GIFT

STAGE_PAIR_STYLES = {"base_sft": "-", "sft_rl": "--"}


def _keep(run: str, runs: Sequence[str] | None, specs: RunSpecs) -> bool:
    """``runs`` given: exactly those; else the paper's comparison (grid.COMPARED_METHODS: plain SFT and every GIFT
    β), the runs the plan evaluates before RL and measures consistency and RL dynamics for."""
    if runs is not None:
        return run in runs
    return specs.strategy(run) in COMPARED_METHODS


def _run_order(specs: RunSpecs):
    """Plain SFT first, then GIFT by β, then anything else by name."""
    def key(run: str) -> tuple:
        strategy, beta = specs.strategy(run), specs.beta(run)
        if strategy == "sft" and beta is None:
            return (0, 0.0, run)
        if strategy == "gift":
            return (1, beta if beta is not None else math.inf, run)
        return (2, 0.0, run)
    return key


def _run_styles(runs, specs: RunSpecs) -> dict[str, dict[str, Any]]:
    """Colour and label per run: plain SFT black; GIFT runs along a colour map by β (legend: β)."""
    runs = sorted(set(runs), key=_run_order(specs))
    gift = [r for r in runs if specs.strategy(r) == "gift"]
    cmap = plt.get_cmap("viridis")
    styles: dict[str, dict[str, Any]] = {}
    others = iter(plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C1"]))
    for run in runs:
        strategy, beta = specs.strategy(run), specs.beta(run)
        if strategy == "sft" and beta is None:
            styles[run] = {"color": "black", "label": "SFT", "lw": 2.0}
        elif strategy == "gift":
            i = gift.index(run)
            frac = 0.15 + 0.7 * (i / max(1, len(gift) - 1)) if len(gift) > 1 else 0.45
            styles[run] = {"color": cmap(frac), "label": f"GIFT β={beta:g}" if beta is not None else "GIFT",
                           "lw": 1.5}
        else:
            styles[run] = {"color": next(others, "grey"), "label": run, "lw": 1.2}
    return styles


def backbones_in(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The backbones the records belong to, sorted (a figure's default panels)."""
    return sorted({job_field(rec, "backbone") for rec in records})


def _panel_row(n_panels: int):
    """One row of ``n_panels`` (at least one) figure panels: (fig, axes[0])."""
    n = max(1, n_panels)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8), squeeze=False)
    return fig, axes[0]


def _empty_panel(ax, title: str) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_title(title)


def fig2_data(consistency: Sequence[Mapping[str, Any]], runs: Sequence[str] | None = None, run_specs=None
              ) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Per backbone → run → stage pair: ``{"k": [...], "overlap": [...], "ci": [[lo, hi], ...]}``.

    ``consistency``: records written by ``scripts/consistency.py`` (``topk_overlap`` {"K": value},
    ``topk_overlap_ci95`` {"K": [lo, hi]}, ``stage_pair``; backbone and run from the provenance
    config). ``runs``: the runs to keep (default: plain SFT and every GIFT β of ``run_specs``, the plan's run
    table).
    """
    specs = RunSpecs(run_specs)
    data: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for rec in consistency:
        bb, run = job_field(rec, "backbone"), job_field(rec, "run")
        pair = rec.get("stage_pair") or job_field(rec, "stage_pair")
        if not _keep(run, runs, specs):
            continue
        overlap = rec.get("topk_overlap") or {}
        cis = rec.get("topk_overlap_ci95") or {}
        ks = sorted(overlap, key=lambda k: int(k))
        data.setdefault(bb, {}).setdefault(run, {})[pair] = {
            "k": [int(k) for k in ks], "overlap": [float(overlap[k]) for k in ks],
            "ci": [list(cis.get(k) or [math.nan, math.nan]) for k in ks]}
    return {bb: {cell: {pair: _mean_over_seeds([per_run[r][pair] for r in members if pair in per_run[r]], "k",
                                               "overlap")
                        for pair in dict.fromkeys(p for r in members for p in per_run[r])}
                 for cell, members in _cells(per_run, specs).items()}
            for bb, per_run in data.items()}


def figure2(consistency, backbones: Sequence[str], pdf, png, runs: Sequence[str] | None = None,
            ci: bool = True, run_specs=None) -> dict:
    """Figure 2: top-K token overlap between consecutive stages, one panel per backbone (the paper's: Llama's left).

    x = K (log scale), y = the token-mean fraction of the K most likely tokens shared by the two
    models; one colour per run (plain SFT black, GIFT coloured by β), solid = Base→SFT, dashed =
    SFT→RL; ``ci`` draws the bootstrap intervals as bands. A backbone without records gets an
    empty panel. The paper's claim: GIFT keeps a consistently higher overlap than SFT.
    """
    from matplotlib.lines import Line2D

    specs = RunSpecs(run_specs)
    backbones = _paper_panels(backbones)
    data = fig2_data(consistency, runs, specs)
    styles = _run_styles([run for bb in backbones for run in data.get(bb, {})], specs)
    fig, axes = _panel_row(len(backbones))
    for col, bb in enumerate(backbones):
        ax = axes[col]
        title = f"({chr(97 + col)}) {bb}: top-K overlap"
        per_run = data.get(bb, {})
        if not per_run:
            _empty_panel(ax, title)
            continue
        pairs_seen = set()
        for run in sorted(per_run, key=_run_order(specs)):
            st = styles[run]
            for pair in STAGE_PAIRS:
                d = per_run[run].get(pair)
                if not d or not d["k"]:
                    continue
                pairs_seen.add(pair)
                ax.plot(d["k"], d["overlap"], ls=STAGE_PAIR_STYLES[pair], marker="o", ms=3,
                        color=st["color"], lw=st["lw"])
                los = [c[0] for c in d["ci"]]
                his = [c[1] for c in d["ci"]]
                if ci and not any(math.isnan(v) for v in los + his):
                    ax.fill_between(d["k"], los, his, color=st["color"], alpha=0.12, lw=0)
        ax.set_xscale("log")
        all_k = sorted({k for r in per_run.values() for d in r.values() for k in d["k"]})
        if all_k:
            ax.set_xticks(all_k, [str(k) for k in all_k])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set(title=title, xlabel="K", ylabel="top-K overlap")
        handles = [Line2D([], [], color=styles[r]["color"], lw=styles[r]["lw"], label=styles[r]["label"])
                   for r in sorted(per_run, key=_run_order(specs))]
        handles += [Line2D([], [], color="grey", ls=STAGE_PAIR_STYLES[p], label=STAGE_PAIRS[p])
                    for p in STAGE_PAIRS if p in pairs_seen]
        ax.legend(handles=handles, fontsize=7)
    fig.tight_layout()
    _save(fig, pdf, png)
    return data


def fig3_data(rl_metrics: Sequence[Mapping[str, Any]], runs: Sequence[str] | None = None, run_specs=None
              ) -> dict[str, dict[str, dict[str, list]]]:
    """Per backbone → run: ``{"progress": [...], "pass@1": [...], "ci": [[lo, hi], ...], "step": [...]}``.

    ``rl_metrics``: ``results/rl/<backbone>/<run>/metrics.json`` records with a ``"dynamics"`` list
    (``giftlab.training.grpo``); runs without dynamics are left out. Progress is the row's
    ``progress`` (step / max_steps), else step / the run's final step. ``runs`` / ``run_specs``: as
    :func:`fig2_data`.
    """
    specs = RunSpecs(run_specs)
    data: dict[str, dict[str, dict[str, list]]] = {}
    for rec in rl_metrics:
        bb, run = job_field(rec, "backbone"), job_field(rec, "run")
        if not _keep(run, runs, specs):
            continue
        rows = sorted(rec.get("dynamics") or [], key=lambda r: r["step"])
        if not rows:
            continue
        last = max(rec.get("steps") or 0, rows[-1]["step"]) or 1
        data.setdefault(bb, {})[run] = {
            "step": [r["step"] for r in rows],
            "progress": [r["progress"] if r.get("progress") is not None else r["step"] / last for r in rows],
            "pass@1": [r["pass@1"] for r in rows],
            "ci": [list(r.get("pass@1_ci95") or [math.nan, math.nan]) for r in rows]}
    return {bb: {cell: _mean_over_seeds([per_run[r] for r in members], "progress", "pass@1")
                 for cell, members in _cells(per_run, specs).items()}
            for bb, per_run in data.items()}


def _cells(per_run: Mapping[str, Any], specs: RunSpecs) -> dict[str, list[str]]:
    """{cell: its runs}: the replicates of one grid cell over seeds (config seeds) together; without seeds, every
    run is its own cell."""
    out: dict[str, list[str]] = {}
    for run in per_run:
        out.setdefault(specs.group(run), []).append(run)
    return out


def _mean_over_seeds(curves: Sequence[Mapping[str, list]], x: str, y: str) -> dict[str, Any]:
    """One cell's curve: a single run's as it is; for replicates over seeds, ``y`` averaged point by point (at the
    x values all of them have) with the seed-level 95% interval as ``ci`` and ``n_seeds``."""
    if len(curves) == 1:
        return dict(curves[0])
    xs = [v for v in curves[0][x] if all(v in c[x] for c in curves)]
    values = [[c[y][c[x].index(v)] for c in curves] for v in xs]
    summaries = [seed_interval(vals) for vals in values]
    out = {x: xs, y: [s["mean"] for s in summaries], "ci": [s["ci"] for s in summaries], "n_seeds": len(curves)}
    if "step" in curves[0]:
        out["step"] = [curves[0]["step"][curves[0][x].index(v)] for v in xs]
    return out


def dynamics_subset_label(rl_metrics: Sequence[Mapping[str, Any]], backbone: str, runs: Sequence[str] | None = None,
                          run_specs=None) -> str:
    """Which problems a backbone's RL dynamics were measured on, for Figure 3's panel title: ``random 64-problem
    subset of 200 (seed 0)`` from each run's ``dynamics_subset`` (``giftlab.training.grpo``); metrics written
    before it existed evaluated the benchmark's first ``n_problems``. Runs that differ are each named, joined by
    ``;``."""
    specs = RunSpecs(run_specs)
    labels = []
    for rec in rl_metrics:
        if job_field(rec, "backbone") != backbone or not _keep(job_field(rec, "run"), runs, specs) \
                or not rec.get("dynamics"):
            continue
        sub = rec.get("dynamics_subset")
        if sub:
            seed = f" (seed {sub['seed']})" if sub.get("seed") is not None else ""
            label = f"{sub['subset']} {sub['problems']}-problem subset of {sub['of']}{seed}" \
                if sub["problems"] < sub["of"] else f"all {sub['of']} problems"  # eval_problems ≥ the benchmark
        else:
            label = f"first {rec['dynamics'][0].get('n_problems', '?')} problems"
        if label not in labels:
            labels.append(label)
    return "; ".join(labels)


def figure3(rl_metrics, backbones: Sequence[str], pdf, png, runs: Sequence[str] | None = None,
            ci: bool = True, benchmark: str | None = None, run_specs=None) -> dict:
    """Figure 3 / Appendix C: pass@1 across RL training progress, SFT vs GIFT initialisation.

    One panel per backbone (the paper's: Llama's left); x = fraction of the RL steps done, y = pass@1 of the policy
    at that point; one line per run (plain SFT black, GIFT coloured, β in the legend), with optional
    bootstrap bands. A backbone without dynamics gets an empty panel. Each title says which problems the
    curves are measured on (:func:`dynamics_subset_label`: a random subset of the benchmark, not all of it).
    """
    specs = RunSpecs(run_specs)
    backbones = _paper_panels(backbones)
    data = fig3_data(rl_metrics, runs, specs)
    styles = _run_styles([run for bb in backbones for run in data.get(bb, {})], specs)
    fig, axes = _panel_row(len(backbones))
    on = f" ({benchmark})" if benchmark else ""
    for col, bb in enumerate(backbones):
        ax = axes[col]
        title = f"({chr(97 + col)}) {bb}: pass@1 during RL{on}"
        subset = dynamics_subset_label(rl_metrics, bb, runs, specs)
        if subset:
            title += f"\n{subset}"
        per_run = data.get(bb, {})
        if not per_run:
            _empty_panel(ax, title)
            continue
        for run in sorted(per_run, key=_run_order(specs)):
            d, st = per_run[run], styles[run]
            ax.plot(d["progress"], d["pass@1"], marker="o", ms=3, **st)
            los = [c[0] for c in d["ci"]]
            his = [c[1] for c in d["ci"]]
            if ci and not any(math.isnan(v) for v in los + his):
                ax.fill_between(d["progress"], los, his, color=st["color"], alpha=0.12, lw=0)
        ax.set(title=title, xlabel="RL training progress (fraction of steps)", ylabel="pass@1", xlim=(0, 1))
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, pdf, png)
    return data
