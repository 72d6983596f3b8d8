"""Training seeds (config ``seeds``): the grid repeats its runs per seed, and every report aggregates over them.

The verdict rule is checked on constructed result sets whose truth is known: a real effect → agree, none →
inconclusive, a reversed one → disagree, with the seed-level test (paired over seeds) and Bonferroni's correction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from giftlab.config import deep_merge, load_config
from giftlab.plan import Plan
from giftlab.reporting import claims as CL
from giftlab.reporting import tables as T
from giftlab.reporting.figures import fig1_data, fig3_data
from giftlab.reporting.rl_gain import rl_gain_table
from helpers import REPO, run_specs

SEEDS = (1234, 1, 2, 3, 4)      # 1234 = params.yaml's seed: its runs keep their plain ids
SPECS = run_specs(betas=(1, 3), seeds=SEEDS)


def rid(cell: str, seed: int) -> str:
    return cell if seed == SEEDS[0] else f"{cell}-s{seed}"


def summ(run, p1, bench="tiny_id", stage="rl", **extra):
    return {"pass@1": p1, "pass@1_ci95": [p1 - 0.05, p1 + 0.05], **extra,
            "provenance": {"config": {"stage": stage, "backbone": "qwen", "run": run, "benchmark": bench}}}


def per_problem(p1: float, n: int = 200, seed: int = 0) -> dict[str, tuple[int, int]]:
    """Per-problem (samples, correct) of 8 samples whose pass@1 is close to ``p1`` (what the claims read)."""
    rng = np.random.default_rng(seed)
    return {f"p{i}": (8, int(c)) for i, c in enumerate(rng.binomial(8, p1, n))}


def mean_pass1(counts: dict[str, tuple[int, int]]) -> float:
    return float(np.mean([c / n for n, c in counts.values()]))


# ---------------------------------------------------------------- the grid

def test_seeds_repeat_every_training_run_and_nothing_else():
    base = load_config(REPO / "params.yaml")
    plain, seeded = Plan(base), Plan(deep_merge(base, {"seeds": list(SEEDS)}))
    assert len(seeded.runs) == len(SEEDS) * len(plain.runs)
    assert [r for r in seeded.runs if r.startswith("gift-b3")] == ["gift-b3", *(f"gift-b3-s{s}" for s in SEEDS[1:])]
    spec = seeded.runs["gift-b3-s2"]
    assert (spec.method, spec.beta, spec.seed, spec.group, spec.cell) == ("gift", 3.0, 2, "gift-b3", "gift-b3")
    assert seeded.runs["direct_sft-s4"].strategy == "direct_sft" and not seeded.runs["direct_sft-s4"].compared
    assert seeded.eval_rule("sft", "direct_sft-s4") == "evaluate_direct_sft"
    # the training jobs take the replicate's seed; the world, split, base and evaluations keep the config's
    assert seeded.job("sft", {"backbone": "qwen", "run": "gift-b3-s2"})["seed"] == 2
    assert seeded.job("grpo", {"backbone": "qwen", "run": "luffy-s3"})["seed"] == 3
    for rule, wildcards in [("world", {}), ("split", {}), ("pretrain_base", {"backbone": "qwen"})]:
        assert seeded.job(rule, wildcards) == plain.job(rule, wildcards)
    assert seeded.job("evaluate", {"stage": "rl", "backbone": "qwen", "run": "sft-s1"})["seed"] == base["seed"]
    # the config's own seed keeps the jobs a config without seeds makes: adding seeds reruns none of them
    for run in plain.runs:
        for rule in ("sft", "grpo"):
            if (rule == "sft" and plain.runs[run].sft) or (rule == "grpo" and plain.runs[run].rl):
                wc = {"backbone": "qwen", "run": run}
                assert seeded.job(rule, wc) == plain.job(rule, wc), (rule, run)
    assert "seed" not in plain.run_table()["gift-b3"]  # a config without seeds records what it always did


# ---------------------------------------------------------------- tables and figures

def _seeded_results(gift_shift: float, noise=(0.0, 0.01, -0.01, 0.02, -0.02)) -> list[dict]:
    recs = []
    for seed, eps in zip(SEEDS, noise):
        recs.append(summ(rid("sft", seed), 0.40 + eps))
        recs.append(summ(rid("gift-b3", seed), 0.40 + gift_shift + eps))
    return recs


def test_tables_collapse_the_seeds_of_a_cell_into_mean_interval_and_count():
    df = T.over_seeds(T.table1(_seeded_results(0.10), benchmarks=["tiny_id"], with_ci=True, run_specs=SPECS), SPECS)
    assert list(df["run"]) == ["sft", "gift-b3"] and list(df["seeds"]) == [5, 5]
    row = df.set_index("run").loc["gift-b3"]
    assert row["tiny_id"] == pytest.approx(50.0) and row["Average"] == pytest.approx(50.0)
    # t(0.975, 4) = 2.7764; the seeds' sd of (0, 1, -1, 2, -2) points is 1.5811 -> half-width 1.963
    assert row["tiny_id seed CI95"] == "[48.04, 51.96]"
    assert "tiny_id CI95" not in df.columns   # per-run problem intervals make no sense for a mean over seeds
    # without seeds the table is what it always was
    plain = T.table1([summ("sft", 0.4)], benchmarks=["tiny_id"], run_specs=run_specs(betas=(1, 3)))
    assert T.over_seeds(plain, run_specs(betas=(1, 3))).equals(plain)


def test_table5_sums_its_turn_counts_over_the_seeds_whose_ratings_it_averages():
    """A cell's Total is the mean over its seeds; its judged, unrated and truncated turns are those of all of them
    (the first seed's counts stood beside the mean)."""
    records = [{"judge": "rubric", "categories": {"math": {"score": 5.0 + i, "n": 10, "unrated": 0}},
                "total": {"score": 5.0 + i, "n": 10 - i, "unrated": i, "ci95": [4.0, 6.0], "truncated": 2 * i},
                "provenance": {"config": {"backbone": "qwen", "run": rid("gift-b3", seed)}}}
               for i, seed in enumerate(SEEDS)]
    row = T.over_seeds(T.table5(records, run_specs=SPECS), SPECS).iloc[0]
    assert row["seeds"] == 5 and row["Total"] == pytest.approx(7.0)
    assert (row["judged"], row["unrated"], row["truncated"]) == (40, 10, 20)


def test_figures_draw_the_seed_mean_with_its_interval():
    sft_metrics = [{"epochs": [{"epoch": 1, "val_loss": 1.0 + i / 10}],
                    "provenance": {"config": {"backbone": "qwen", "run": rid(cell, seed), "method": method,
                                              "beta": beta, "seed": seed}}}
                   for cell, method, beta in (("sft", "sft", None), ("gift-b3", "gift", 3.0))
                   for i, seed in enumerate(SEEDS)]
    data = fig1_data(sft_metrics, _seeded_results(0.10))["qwen"]
    assert set(data["val_loss"]) == {"sft", "gift-b3"}
    assert data["val_loss"]["sft"]["val_loss"] == [pytest.approx(1.2)]
    # the seeds' val losses 1.0 .. 1.4: sd 0.1581, t(0.975, 4) = 2.7764 -> half-width 0.1963 around 1.2
    assert data["val_loss"]["sft"]["ci"] == [pytest.approx([1.2 - 0.1963, 1.2 + 0.1963], abs=1e-4)]
    gift = [p for p in data["rl_pass1"] if p["method"] == "gift"][0]
    assert (gift["beta"], gift["n_seeds"], gift["pass@1"]) == (3.0, 5, pytest.approx(0.50))
    assert gift["ci"] == pytest.approx([0.5 - 0.01963, 0.5 + 0.01963], abs=1e-4)
    dynamics = [{"steps": 20, "dynamics": [{"step": 10, "pass@1": 0.3 + i / 100}, {"step": 20, "pass@1": 0.5}],
                 "provenance": {"config": {"backbone": "qwen", "run": rid("gift-b3", seed)}}}
                for i, seed in enumerate(SEEDS)]
    curve = fig3_data(dynamics, run_specs=SPECS)["qwen"]["gift-b3"]
    assert curve["n_seeds"] == 5 and curve["pass@1"] == pytest.approx([0.32, 0.5])


def test_rl_gain_rows_per_cell_and_benchmark():
    rows = [{"prompt_id": f"p{i}", "correct": i % 2 == 0} for i in range(10)]
    better = [{"prompt_id": f"p{i}", "correct": True} for i in range(10)]
    pairs = [("qwen", rid("sft", s), "tiny_id", rows, better) for s in SEEDS]
    df = rl_gain_table(pairs, SPECS)
    assert len(df) == 1 and df.iloc[0]["seeds"] == 5 and df.iloc[0]["gain"] == pytest.approx(50.0)


# ---------------------------------------------------------------- the verdict rule over seeds

@pytest.mark.parametrize("shift, expected", [(0.10, "agree"), (0.0, "inconclusive"), (-0.10, "disagree")])
def test_seed_level_verdicts_known_effect_none_and_reversed(shift, expected):
    claim = CL.claim_gift_beats_sft(_seeded_results(shift), run_specs=SPECS)
    (check,) = claim["checks"]
    assert check["seeds"] == 5 and check["test"].startswith("paired t over 5 seeds")
    assert check["verdict"] == expected and claim["verdict"] == expected


def test_pairing_by_seed_sees_an_effect_that_independent_intervals_miss():
    # the seeds move both runs together (+-6 points): unpaired intervals straddle 0, the paired differences do not
    noise = (0.0, 0.06, -0.06, 0.03, -0.03)
    recs = _seeded_results(0.03, noise)
    for rec, d in zip([r for r in recs if "gift" in r["provenance"]["config"]["run"]], (0.0, 0.004, -0.004, 0.002, 0.0)):
        rec["pass@1"] += d
    (check,) = CL.claim_gift_beats_sft(recs, run_specs=SPECS)["checks"]
    assert check["verdict"] == "agree"
    gift = [r["pass@1"] for r in recs if "gift" in r["provenance"]["config"]["run"]]
    sft = [r["pass@1"] for r in recs if "gift" not in r["provenance"]["config"]["run"]]
    from giftlab.stats import seed_interval
    g, s = seed_interval(gift), seed_interval(sft)
    assert g["ci"][0] < s["ci"][1]   # the two marginal intervals overlap


def test_bonferroni_widens_each_interval_with_the_number_of_checks():
    """A small effect over 5 seeds (Δ per seed 1-5 points): alone it agrees at 95%; judged as one of six checks
    (2 β × 3 benchmarks) each interval is at 1 − 0.05/6 and straddles 0."""
    deltas = (0.03, 0.01, 0.05, 0.02, 0.04)

    def results(cells, benches):
        recs = []
        for bench in benches:
            for seed, d in zip(SEEDS, deltas):
                recs.append(summ(rid("sft", seed), 0.40, bench))
                recs += [summ(rid(cell, seed), 0.40 + d, bench) for cell in cells]
        return recs

    (alone,) = CL.claim_gift_beats_sft(results(["gift-b3"], ["tiny_id"]), run_specs=SPECS)["checks"]
    assert (alone["verdict"], alone["interval"]) == ("agree", "[+1.04, +4.96] (95%)")   # 3 ± 2.776 · 1.581 / √5
    many = CL.claim_gift_beats_sft(results(["gift-b1", "gift-b3"], ["tiny_id", "tiny_ood", "tiny_mc"]),
                                   run_specs=SPECS)
    assert len(many["checks"]) == 6 and many["verdict"] == "inconclusive"
    assert all(c["interval"].endswith("(99.17%)") for c in many["checks"])


def test_single_seed_pass1_is_paired_over_problems_and_pooled_with_seeds():
    specs = run_specs(betas=(3,))
    sft, gift = per_problem(0.40, seed=1), per_problem(0.40, seed=1)
    gift = {pid: (n, min(n, c + 1)) for pid, (n, c) in gift.items()}   # +1 of 8 samples on every problem
    recs = [summ("sft", mean_pass1(sft)), summ("gift-b3", mean_pass1(gift))]
    samples = {("qwen", "sft", "tiny_id"): sft, ("qwen", "gift-b3", "tiny_id"): gift}
    (check,) = CL.claim_gift_beats_sft(recs, run_specs=specs, samples=samples)["checks"]
    assert check["test"] == "paired bootstrap over 200 problems" and check["verdict"] == "agree"
    # over seeds, with samples: the pooled problems × seeds interval is reported beside the seed-level test
    recs, samples = [], {}
    for i, seed in enumerate(SEEDS):
        for cell, shift in (("sft", 0.0), ("gift-b3", 0.1)):
            acc = per_problem(0.4 + shift, seed=10 * i + (cell == "sft"))
            recs.append(summ(rid(cell, seed), mean_pass1(acc)))
            samples[("qwen", rid(cell, seed), "tiny_id")] = acc
    (check,) = CL.claim_gift_beats_sft(recs, run_specs=SPECS, samples=samples)["checks"]
    assert "pooled problems × seeds [+" in check["test"] and check["verdict"] == "agree"


def test_seeds_the_two_cells_do_not_share_are_left_out():
    recs = [r for r in _seeded_results(0.10) if r["provenance"]["config"]["run"] not in ("sft-s4", "gift-b3-s3")]
    (check,) = CL.claim_gift_beats_sft(recs, run_specs=SPECS)["checks"]
    assert check["seeds"] == 3 and check["test"].startswith("paired t over 3 seeds")
    assert math.isclose(float(check["delta"]), 10.0, abs_tol=1e-6)


def test_figure1_says_mean_of_seeds_once_and_only_on_panels_whose_points_are(tmp_path, monkeypatch):
    # the suffix was added to a title shared by the panels: the second panel said it twice, or wrongly
    from giftlab.reporting import figures as F

    titles = []
    monkeypatch.setattr(F, "_save", lambda fig, pdf, png: titles.extend(ax.get_title() for ax in fig.axes))
    sft, evals = [], []
    for bb, seeds in (("llama", (None, 1, 2)), ("qwen", (None, 1, 2)), ("tiny", (None,))):
        for cell, method, beta in (("sft", "sft", None), ("gift-b3", "gift", 3.0)):
            for s in seeds:
                run = cell if s is None else f"{cell}-s{s}"
                sft.append({"epochs": [{"epoch": 1, "val_loss": 1.0}],
                            "provenance": {"config": {"backbone": bb, "run": run, "method": method, "beta": beta}}})
                evals.append({"pass@1": 0.3, "pass@1_ci95": [0.2, 0.4], "provenance": {"config": {
                    "backbone": bb, "run": run, "benchmark": "math500", "stage": "rl"}}})
    F.figure1(sft, evals, ["llama", "qwen", "tiny"], tmp_path / "f.pdf", tmp_path / "f.png", benchmarks=["math500"])
    after_rl = [t for t in titles if "after RL" in t]
    assert [t.count("mean of 3 seeds") for t in after_rl] == [1, 1, 0], after_rl
    val_loss = [t for t in titles if "validation loss" in t]
    assert [t.count("mean of 3 seeds") for t in val_loss] == [1, 1, 0], val_loss


def test_pooled_interval_draws_enough_resamples_for_its_bonferroni_level(monkeypatch):
    """The pooled problems × seeds interval is printed at the claim's Bonferroni level like the others, so it needs
    their resamples (giftlab.stats.resamples_for: 20 beyond each end). It drew 2,000 whatever the level: at claim 3's
    m = 96 (README) that left 0.5 resamples per tail, an interval of the extreme resamples that moves with the seed."""
    from giftlab.stats import nested_bootstrap_ci, resamples_for

    drawn = []

    def recording(values, n_resamples=2000, alpha=0.05, seed=0):
        drawn.append(n_resamples)
        return nested_bootstrap_ci(values, 10, alpha, seed)

    monkeypatch.setattr(CL, "nested_bootstrap_ci", recording)
    alpha = 0.05 / 96
    evidence = CL.Evidence(0.1, seed_deltas=[0.1, 0.12, 0.08], pooled=[[0.1, 0.2, 0.0], [0.1, 0.1, 0.2]])
    assert "pooled problems × seeds" in evidence.decide(alpha, 100, 2)["test"]
    assert drawn == [resamples_for(alpha)] and drawn[0] * alpha / 2 >= 20


def test_seeds_that_all_give_one_delta_are_not_a_zero_width_interval():
    """Two seeds with the same Δ (discrete pass rates, few seeds): the t interval has width 0 and would call any
    Δ ≠ 0 a finding; the pooled problems × seeds interval decides instead, where the claim has one."""
    from giftlab.stats import nested_bootstrap_ci, resamples_for

    pooled = [[0.0, -0.25, 0.0, 0.0], [-0.25, 0.0, 0.0, 0.0]]
    decided = CL.Evidence(-0.0833, seed_deltas=[-0.0833, -0.0833], pooled=pooled).decide(0.05, 100, 2)
    assert "all with the same delta (t: no spread); pooled problems × seeds" in decided["test"]
    lo, hi = nested_bootstrap_ci(pooled, resamples_for(0.05), 0.05)
    assert decided["interval"].startswith(f"[{100 * lo:+.2f}, {100 * hi:+.2f}]") and lo < 0 <= hi
    assert decided["verdict"] != "disagree"
    alone = CL.Evidence(-0.0833, seed_deltas=[-0.0833, -0.0833]).decide(0.05, 100, 2)  # nothing better to go on
    assert alone["test"].endswith("(every seed the same delta: no spread)")
