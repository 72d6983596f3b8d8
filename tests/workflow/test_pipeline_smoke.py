"""What a real Snakemake run of the whole DAG on the smoke profile made (the shared run of tests/workflow/conftest.py):
every table and figure, from the run's own results, with provenance. Snakemake run again on it: test_smoke_reruns.py.
"""

import json
from pathlib import Path

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow
SMOKE = REPO / "config" / "smoke.yaml"


@pytest.mark.parametrize("n", [1, 2, 3])
def test_every_figure_exists_and_is_a_real_pdf(smoke_run, n):
    pdf = smoke_run / "figures" / f"fig{n}.pdf"
    png = smoke_run / "figures" / f"fig{n}.png"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_every_table_exists_in_three_formats(smoke_run, n):
    stem = smoke_run / "results" / "tables" / f"table{n}"
    rows = stem.with_suffix(".csv").read_text().splitlines()
    assert len(rows) >= 2, rows  # a header and at least one run
    assert stem.with_suffix(".md").read_text().startswith("|")
    assert "\\begin{tabular}" in stem.with_suffix(".tex").read_text()


def test_rl_gain_pairs_each_sft_and_gift_run_before_and_after_rl(smoke_run):
    import pandas as pd

    table = pd.read_csv(smoke_run / "results" / "tables" / "rl_gain.csv")
    assert sorted(table["run"]) == ["gift-b3", "sft"]
    assert set(table["beyond noise"]) <= {"yes", "no"}


def test_table1_lists_every_final_policy_of_the_grid(smoke_run):
    """A row per final policy: the runs RL starts from (smoke.yaml's grpo.runs: SFT and GIFT), Direct RL and Direct
    SFT; the objectives trained without RL have none."""
    import pandas as pd

    table = pd.read_csv(smoke_run / "results" / "tables" / "table1.csv")
    assert sorted(table["run"]) == sorted(run for _, run in smoke_plan().final_models()) == \
        ["direct_rl", "direct_sft", "gift-b3", "sft"]


def test_table5_rates_the_chosen_sft_then_rl_policies_from_their_judged_answers(smoke_run):
    """Table 5 from real generations and real judgements: a row per policy of the objectives smoke.yaml's
    mtbench.methods names (SFT, GIFT), each row's Total the mean of its judged turns."""
    import pandas as pd

    table = pd.read_csv(smoke_run / "results" / "tables" / "table5.csv")
    assert set(table["run"]) == {"sft", "gift-b3"}
    assert not (smoke_run / "results" / "mtbench" / "answers" / "qwen" / "dft.jsonl").exists()
    assert {"Total", "Reasoning", "Math", "Extract", "paper Total", "paper Extract"} <= set(table.columns)
    for row in table.itertuples():
        verdicts = [json.loads(line) for line in
                    (smoke_run / "results" / "mtbench" / "judgements" / "qwen" / f"{row.run}.jsonl").read_text().splitlines()]
        assert len(verdicts) == 2 * 6 and row.judged + row.unrated == 12
        rated = [v["rating"] for v in verdicts if v["rating"] is not None]
        assert row.Total == pytest.approx(sum(rated) / len(rated))
    gift = table[table["run"] == "gift-b3"].iloc[0]
    assert gift["paper Total"] == 6.34  # the paper's GIFT row, Qwen2.5-7B


def smoke_plan():
    from giftlab.config import load_config
    from giftlab.plan import Plan

    return Plan(load_config(REPO / "params.yaml", SMOKE))


def read_results(workdir, paths):
    return [json.loads((workdir / p).read_text()) for p in paths]


def test_claims_report_states_the_verdicts_the_results_give(smoke_run):
    """claims.md says, claim by claim, what giftlab.reporting.claims decides from the run's own result files (not
    just some verdict words: the legend holds them all)."""
    from giftlab.data import read_jsonl
    from giftlab.reporting.claims import evaluate_claims
    from giftlab.reporting.rl_gain import per_problem_counts

    plan = smoke_plan()

    def per_problem(keys, summarise):  # the paired tests' inputs, as the rule passes them (--rl/--pre-rl-samples)
        return {key[1:]: summarise(read_jsonl(smoke_run / plan.eval_samples(*key))) for key in keys}

    claims = evaluate_claims(read_results(smoke_run, plan.final_evals()), read_results(smoke_run, plan.pre_rl_evals()),
                             read_results(smoke_run, plan.consistency_results()), run_specs=plan.run_table(),
                             reasoning_benchmarks=plan.benchmarks("reasoning"),
                             samples=per_problem(plan.final_eval_keys(), per_problem_counts),
                             pre_rl_samples=per_problem(plan.pre_rl_eval_keys(), per_problem_counts))
    assert any(c["test"].startswith("paired bootstrap") for claim in claims[:2] for c in claim["checks"])
    # claim 3 of one seed, paired over the validation examples both consistency results scored
    assert claims[2]["checks"] and all(c["test"].endswith("validation examples (token means)")
                                       for c in claims[2]["checks"])
    text = (smoke_run / "results" / "tables" / "claims.md").read_text()
    for claim in claims:
        assert f"## {claim['title']}: **{claim['verdict']}**" in text, claim["id"]
    checks = [c for claim in claims for c in claim["checks"]]
    assert checks and {c["run"] for c in checks} == {"gift-b3"}  # GIFT at the smoke grid's one β, against SFT
    assert sum(line.startswith("| qwen | GIFT (β=3) |") for line in text.splitlines()) == len(checks)


def test_figures_plot_every_compared_run_from_their_inputs(smoke_run):
    """The data each figure draws (recomputed from the inputs its provenance names): a curve or point per run the
    paper compares, on both stage pairs, over RL progress; and the images are not blank."""
    from matplotlib.image import imread

    from giftlab.reporting.figures import fig1_data, fig2_data, fig3_data

    plan = smoke_plan()
    compared, specs = plan.compared_runs(), plan.run_table()
    assert compared == ["sft", "gift-b3"]
    fig1_inputs = plan.fig1_inputs()
    assert set(json.loads((smoke_run / "figures" / "fig1.provenance.json").read_text())["inputs"]) == \
        {*fig1_inputs["sft_metrics"], *fig1_inputs["rl_evals"]}
    fig1 = fig1_data(read_results(smoke_run, fig1_inputs["sft_metrics"]), read_results(smoke_run, fig1_inputs["rl_evals"]))
    points = {p["run"]: p for p in fig1["qwen"]["rl_pass1"]}
    assert set(points) == set(compared) and points["gift-b3"]["beta"] == 3.0 and points["sft"]["beta"] == float("inf")
    assert all(0 <= p["pass@1"] <= 1 for p in points.values())
    assert {run: len(curve["epoch"]) for run, curve in fig1["qwen"]["val_loss"].items()} == {"sft": 2, "gift-b3": 2}
    fig2 = fig2_data(read_results(smoke_run, plan.consistency_results()), run_specs=specs)
    assert {run: sorted(pairs) for run, pairs in fig2["qwen"].items()} == \
        {run: ["base_sft", "sft_rl"] for run in compared}
    assert all(0 <= v <= 1 for pairs in fig2["qwen"].values() for d in pairs.values() for v in d["overlap"])
    fig3 = fig3_data(read_results(smoke_run, plan.rl_metrics(compared)), run_specs=specs)
    for run in compared:
        progress = fig3["qwen"][run]["progress"]
        assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 1.0, run
    for n in (1, 2, 3):
        image = imread(smoke_run / "figures" / f"fig{n}.png")
        assert image.std() > 0.01, n  # something is drawn


def test_every_result_json_carries_provenance(smoke_run):
    results = sorted((smoke_run / "results").rglob("*.json"))
    assert len(results) >= 10
    for path in results:
        record = json.loads(path.read_text())
        if path.parent.name == "summary" and path.name != "summary.provenance.json":
            continue  # the flat `dvc metrics` / `dvc plots` views: their record is summary.provenance.json
        assert isinstance(record, dict) and "provenance" in record, path
        prov = record["provenance"]
        assert len(prov["config_hash"]) == 16 and prov["git_commit"] and "torch" in prov["packages"], path
        assert prov["seed"] is not None, path
        assert prov["hardware"]["cpu"] and prov["hardware"]["machine"], path
        if path.name == "metrics.json" or path.parent.name == "pretrain":
            assert prov["hardware"]["cpu_capability"], path  # training jobs: the instruction set their kernels used


def test_every_table_and_figure_has_a_provenance_sidecar(smoke_run):
    """A CSV or PDF cannot carry its provenance: <stem>.provenance.json does, with hashes of inputs and outputs."""
    import hashlib

    drawn = [*(smoke_run / "results" / "tables").glob("*.csv"), *(smoke_run / "figures").glob("*.pdf"),
             smoke_run / "results" / "tables" / "claims.md"]
    summary = json.loads((smoke_run / "results" / "summary" / "summary.provenance.json").read_text())
    metrics = smoke_run / "results" / "summary" / "metrics.json"
    assert "provenance" not in json.loads(metrics.read_text())  # `dvc metrics show`: the numbers only
    assert summary["outputs"]["results/summary/metrics.json"] == hashlib.sha256(metrics.read_bytes()).hexdigest()
    assert len(drawn) >= 8
    for path in drawn:
        sidecar = json.loads(path.with_name(f"{path.stem}.provenance.json").read_text())
        assert sidecar["provenance"]["git_commit"] and sidecar["provenance"]["config_hash"], path
        outputs = {Path(p).name: h for p, h in sidecar["outputs"].items()}
        assert outputs[path.name] == hashlib.sha256(path.read_bytes()).hexdigest(), path
        assert sidecar["inputs"], path
        for inp, digest in sidecar["inputs"].items():
            assert hashlib.sha256((smoke_run / inp).read_bytes()).hexdigest() == digest, (path, inp)


def test_sft_metrics_have_a_validation_loss_per_epoch(smoke_run):
    for path in (smoke_run / "results" / "sft").rglob("metrics.json"):
        metrics = json.loads(path.read_text())
        assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
        assert all(e["val_loss"] > 0 for e in metrics["epochs"])
    model_dirs = sorted((smoke_run / "models" / "sft").glob("*/*"))
    # every objective trained through the sft rule: 7 objectives + GIFT at one β + Direct SFT (one backbone in smoke)
    assert [d.name for d in model_dirs] == sorted(smoke_plan().sft_runs()) and len(model_dirs) == 9
    for model_dir in model_dirs:
        assert sorted(p.name for p in model_dir.iterdir() if not p.name.startswith(".")) == ["epoch_1", "epoch_2"]
        assert (model_dir / "epoch_2" / "config.json").exists()


def test_rl_and_eval_outputs_are_well_formed(smoke_run):
    rl = sorted((smoke_run / "results" / "rl").rglob("metrics.json"))
    assert len(rl) == 3  # the SFT runs of grpo.runs (SFT, GIFT), plus Direct RL
    for path in rl:
        metrics = json.loads(path.read_text())
        assert metrics["steps"] == 2 and metrics["log"], path
    dynamics = json.loads((smoke_run / "results" / "rl" / "qwen" / "gift-b3" / "metrics.json").read_text())["dynamics"]
    assert [row["step"] for row in dynamics][0] == 0 and len(dynamics) >= 2
    evals = sorted((smoke_run / "results" / "eval").rglob("*.summary.json"))
    assert len(evals) == 18  # 4 final policies x 4 tiny benchmarks + 2 pre-RL checkpoints
    for path in evals:
        summary = json.loads(path.read_text())
        assert 0.0 <= summary["pass@1"] <= 1.0
        samples = path.with_name(path.name.replace(".summary.json", ".samples.jsonl"))
        rows = [json.loads(line) for line in samples.read_text().splitlines()]
        assert len(rows) == summary["n_problems"] * summary["n_samples"]
    mc = json.loads((smoke_run / "results" / "eval" / "rl" / "qwen" / "sft" / "tiny_mc.summary.json").read_text())
    assert mc["n_problems"] == 8 and mc["provenance"]["config"]["benchmark"] == "tiny_mc"


def test_results_name_the_exact_rows_and_weights_behind_them(smoke_run):
    """The chain from a table's row back to its data, by content: the split records its subsets' hashes, each SFT and
    GRPO run those of the subsets it trained on, each evaluation the hash of the weights it evaluated."""
    from giftlab.provenance import path_sha256

    split = json.loads((smoke_run / "results" / "split.json").read_text())["data_sha256"]
    assert split == {f"data/splits/{name}.jsonl": path_sha256(smoke_run / "data" / "splits" / f"{name}.jsonl")[:16]
                     for name in ("sft", "rl", "val")}
    sft = json.loads((smoke_run / "results" / "sft" / "qwen" / "sft" / "metrics.json").read_text())["data_sha256"]
    assert sft == {k: split[k] for k in ("data/splits/sft.jsonl", "data/splits/val.jsonl")}
    grpo = json.loads((smoke_run / "results" / "rl" / "qwen" / "sft" / "metrics.json").read_text())["data_sha256"]
    assert grpo == {"data/splits/rl.jsonl": split["data/splits/rl.jsonl"]}
    summary = json.loads((smoke_run / "results" / "eval" / "rl" / "qwen" / "sft" / "tiny_id.summary.json").read_text())
    assert summary["model_sha256"] == path_sha256(smoke_run / "models" / "rl" / "qwen" / "sft")[:16]
