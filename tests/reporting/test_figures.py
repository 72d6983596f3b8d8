"""Figures 2 and 3 from constructed result records (no training)."""

import importlib.util
import json
from pathlib import Path

import pytest

from giftlab.provenance import write_result
from functools import partial

from giftlab.reporting import figures as F
from giftlab.reporting.figures import fig1_data, mean_pass1, figure1
from helpers import run_specs

SPECS = run_specs()  # the plan's run table, as the figure jobs receive it
fig2_data, fig3_data = partial(F.fig2_data, run_specs=SPECS), partial(F.fig3_data, run_specs=SPECS)
figure2, figure3 = partial(F.figure2, run_specs=SPECS), partial(F.figure3, run_specs=SPECS)

REPO = Path(__file__).resolve().parents[2]
KS = [1, 5, 10, 20, 50]


def consistency_rec(backbone, run, pair, base=0.8):
    overlap = {str(k): base - 0.01 * i for i, k in enumerate(KS)}
    return {"stage_pair": pair, "backbone": backbone, "run": run, "topk_overlap": overlap,
            "topk_overlap_ci95": {k: [v - 0.02, v + 0.02] for k, v in overlap.items()},
            "provenance": {"config": {"backbone": backbone, "run": run, "stage_pair": pair}}}


def rl_rec(backbone, run, steps=10, every=5, start=0.3, ci=True):
    rows = []
    for step in range(0, steps + 1, every):
        p = start + 0.01 * step
        row = {"step": step, "progress": step / steps, "pass@1": p, "n_problems": 8, "n_samples": 4}
        if ci:
            row["pass@1_ci95"] = [p - 0.05, p + 0.05]
        rows.append(row)
    return {"backbone": backbone, "run": run, "steps": steps, "dynamics": rows,
            "provenance": {"config": {"backbone": backbone, "run": run}}}


def assert_figure(tmp_path, stem):
    pdf, png = tmp_path / f"{stem}.pdf", tmp_path / f"{stem}.png"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # written through temp names


CONSISTENCY = [consistency_rec(bb, run, pair, base)
               for bb in ("qwen", "llama")
               for run, base in (("sft", 0.7), ("gift-b3", 0.85), ("gift-b10", 0.8), ("dft", 0.75))
               for pair in ("base_sft", "sft_rl")]


def test_figure2_draws_sft_and_gift_runs_per_backbone(tmp_path):
    data = figure2(CONSISTENCY, ["qwen", "llama"], tmp_path / "fig2.pdf", tmp_path / "fig2.png")
    assert_figure(tmp_path, "fig2")
    assert set(data) == {"qwen", "llama"}
    assert set(data["qwen"]) == {"sft", "gift-b3", "gift-b10"}  # other methods left out by default
    assert data["qwen"]["gift-b3"]["sft_rl"]["k"] == KS
    assert data["qwen"]["gift-b3"]["base_sft"]["overlap"][0] == pytest.approx(0.85)


def test_figure2_single_run_missing_backbone_and_explicit_runs(tmp_path):
    one = [consistency_rec("qwen", "sft", "base_sft")]
    figure2(one, ["qwen", "llama"], tmp_path / "a.pdf", tmp_path / "a.png")  # llama: empty panel
    assert_figure(tmp_path, "a")
    no_ci = [{k: v for k, v in r.items() if k != "topk_overlap_ci95"} for r in one]
    figure2(no_ci, ["qwen"], tmp_path / "b.pdf", tmp_path / "b.png", ci=True)
    assert_figure(tmp_path, "b")
    figure2([], ["qwen"], tmp_path / "c.pdf", tmp_path / "c.png")
    assert_figure(tmp_path, "c")
    assert set(fig2_data(CONSISTENCY, runs=["dft"])["llama"]) == {"dft"}


def test_figure3_draws_progress_curves_per_backbone(tmp_path):
    recs = [rl_rec(bb, run, start=s) for bb in ("qwen", "llama")
            for run, s in (("sft", 0.3), ("gift-b1", 0.35), ("gift-b3", 0.4), ("direct_rl", 0.1))]
    data = figure3(recs, ["qwen", "llama"], tmp_path / "fig3.pdf", tmp_path / "fig3.png", benchmark="tiny_id")
    assert_figure(tmp_path, "fig3")
    assert set(data["qwen"]) == {"sft", "gift-b1", "gift-b3"}
    assert data["qwen"]["sft"]["progress"] == [0.0, 0.5, 1.0]
    assert data["llama"]["gift-b3"]["pass@1"] == pytest.approx([0.4, 0.45, 0.5])


def test_figure3_single_run_missing_backbone_no_ci_and_no_dynamics(tmp_path):
    recs = [rl_rec("qwen", "gift-b3", ci=False), {**rl_rec("qwen", "sft"), "dynamics": []}]
    data = figure3(recs, ["qwen", "llama"], tmp_path / "a.pdf", tmp_path / "a.png")
    assert_figure(tmp_path, "a")
    assert set(data) == {"qwen"} and set(data["qwen"]) == {"gift-b3"}
    # Rows without "progress" fall back to step / the run's final step.
    rec = rl_rec("qwen", "sft", steps=4, every=2)
    for r in rec["dynamics"]:
        del r["progress"]
    assert fig3_data([rec])["qwen"]["sft"]["progress"] == [0.0, 0.5, 1.0]
    figure3([], ["qwen"], tmp_path / "b.pdf", tmp_path / "b.png")
    assert_figure(tmp_path, "b")


def test_figure3_titles_say_the_curves_are_a_random_subset_of_the_benchmark(tmp_path, monkeypatch):
    """Figure 3's curves are measured on grpo.eval_problems problems, not the whole benchmark: each panel's title
    says which (metrics from before the subset was recorded evaluated the first N)."""
    titles = []
    monkeypatch.setattr(F, "_save", lambda fig, pdf, png: titles.extend(ax.get_title() for ax in fig.axes))
    subset = {"subset": "random", "seed": 0, "problems": 64, "of": 200, "ids": []}
    recs = [{**rl_rec("qwen", run), "dynamics_subset": subset} for run in ("sft", "gift-b3")] + \
        [rl_rec("llama", "sft")]
    figure3(recs, ["qwen", "llama"], tmp_path / "fig3.pdf", tmp_path / "fig3.png", benchmark="tiny_id")
    # Llama's panel left, as the paper draws its figures, whatever the order asked for
    assert titles == ["(a) llama: pass@1 during RL (tiny_id)\nfirst 8 problems",
                      "(b) qwen: pass@1 during RL (tiny_id)\nrandom 64-problem subset of 200 (seed 0)"]
    first = {**subset, "subset": "first", "seed": None}
    assert F.dynamics_subset_label([{**recs[0], "dynamics_subset": first}, recs[1]], "qwen", run_specs=SPECS) == \
        "first 64-problem subset of 200; random 64-problem subset of 200 (seed 0)"
    whole = {**subset, "problems": 30, "of": 30}  # eval_problems at least the benchmark: all of it, no subset
    assert F.dynamics_subset_label([{**recs[0], "dynamics_subset": whole}], "qwen",
                                   run_specs=SPECS) == "all 30 problems"


def _script(name):
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figure_scripts_read_result_files(tmp_path):
    files2, files3 = [], []
    for rec in CONSISTENCY[:4]:
        path = tmp_path / "c" / rec["backbone"] / rec["run"] / f"{rec['stage_pair']}.json"
        write_result(path, {k: v for k, v in rec.items() if k != "provenance"}, rec["provenance"]["config"])
        files2.append(str(path))
    for run in ("sft", "gift-b3"):
        rec = rl_rec("qwen", run)
        path = tmp_path / "rl" / "qwen" / run / "metrics.json"
        write_result(path, {k: v for k, v in rec.items() if k != "provenance"}, {"backbone": "qwen", "run": run})
        files3.append(str(path))
    out = tmp_path / "figs"
    _script("figure2").main(["--config", json.dumps({"backbones": ["qwen", "llama"], "run_specs": SPECS}),
                             "--consistency", *files2,
                             "--pdf", str(out / "fig2.pdf"), "--png", str(out / "fig2.png")])
    _script("figure3").main(["--config", json.dumps({"benchmark": "tiny_id", "run_specs": SPECS}), "--rl-metrics",
                             *files3,
                             "--pdf", str(out / "fig3.pdf"), "--png", str(out / "fig3.png")])
    assert_figure(out, "fig2")
    assert_figure(out, "fig3")


def eval_rec(backbone, run, benchmark, p1, ci):
    return {"pass@1": p1, "pass@1_ci95": list(ci),
            "provenance": {"config": {"backbone": backbone, "run": run, "benchmark": benchmark, "stage": "rl"}}}


def test_mean_pass1_over_benchmarks_adds_errors_in_quadrature():
    one = mean_pass1([eval_rec("q", "sft", "a", 0.5, (0.4, 0.7))])
    assert one == {"pass@1": 0.5, "ci": [0.4, 0.7]}  # one benchmark keeps its own (bootstrap) interval
    two = mean_pass1([eval_rec("q", "sft", "a", 0.2, (0.1, 0.3)), eval_rec("q", "sft", "b", 0.6, (0.5, 0.7))])
    half = 1.96 * ((0.1 / 1.96) ** 2 * 2) ** 0.5 / 2  # se 0.1/1.96 each, mean of two
    assert two["pass@1"] == pytest.approx(0.4)
    assert two["ci"] == [pytest.approx(0.4 - half), pytest.approx(0.4 + half)]


def test_figure1_averages_the_math_benchmarks(tmp_path):
    sft = [{"epochs": [{"epoch": 1, "val_loss": 1.0}, {"epoch": 2, "val_loss": 0.8}],  # the SFT jobs' method and β
            "provenance": {"config": {"backbone": "qwen", "run": run, "method": method, "beta": beta}}}
           for run, method, beta in (("sft", "sft", None), ("gift-b3", "gift", 3.0))]
    evals = [eval_rec("qwen", run, bench, p, (p - 0.05, p + 0.05))
             for run, ps in (("sft", (0.2, 0.4)), ("gift-b3", (0.3, 0.7))) for bench, p in zip(("m1", "m2"), ps)]
    data = figure1(sft, evals, ["qwen"], tmp_path / "fig1.pdf", tmp_path / "fig1.png", benchmarks=["m1", "m2"])
    points = {p["run"]: p for p in data["qwen"]["rl_pass1"]}
    assert points["sft"]["pass@1"] == pytest.approx(0.3) and points["gift-b3"]["pass@1"] == pytest.approx(0.5)
    assert points["gift-b3"]["benchmarks"] == ["m1", "m2"]
    assert (points["gift-b3"]["method"], points["gift-b3"]["beta"]) == ("gift", 3.0)  # read from the SFT results
    assert fig1_data(sft, evals[:1])["qwen"]["rl_pass1"][0]["pass@1"] == 0.2
    assert_figure(tmp_path, "fig1")


def test_the_runs_compared_before_rl_come_from_the_grid_alone(monkeypatch):
    """Which objectives the SFT-vs-GIFT analyses compare is grid.COMPARED_METHODS (what the plan evaluates before RL
    and measures consistency for): Table 3 and Figures 2-3 read it, no copy of their own (a method added there was
    planned and evaluated, and silently left out of Table 3)."""
    import inspect

    from giftlab import grid
    from giftlab.reporting import tables as T

    assert inspect.signature(T.table3).parameters["methods"].default is grid.COMPARED_METHODS
    specs = F.RunSpecs({"mine-b3": {"strategy": "mine", "method": "mine", "beta": 3.0}})
    assert not F._keep("mine-b3", None, specs)
    monkeypatch.setattr(F, "COMPARED_METHODS", (*grid.COMPARED_METHODS, "mine"))
    assert F._keep("mine-b3", None, specs)
