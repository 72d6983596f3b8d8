"""Adding an objective is one module: registered, it is validated, planned, trained and labelled with nothing else
changed (the registry is the single source of truth; no enum, label table or run-name rule to edit)."""

from __future__ import annotations

import importlib
import sys

import pytest

from giftlab.cli import ConfigError
from giftlab.config import deep_merge, load_config, validate_config
from giftlab.objectives import OBJECTIVES
from giftlab.plan import Plan
from giftlab.reporting import tables as T
from helpers import REPO

MODULE = '''
"""A new objective, as a user would add it: half of plain SFT's loss."""
from giftlab.lazy import torch  # Snakemake's own process imports the registry, never torch
from giftlab.objectives import register


@register("sft_half", label="SFT / 2", full_vocab=False)
def sft_half(batch):
    """l = -0.5 log pi_theta(y*)."""
    return 0.5 * torch.nn.functional.cross_entropy(batch.logits.float(), batch.labels, reduction="none")
'''


@pytest.fixture
def new_objective(tmp_path, monkeypatch):
    (tmp_path / "my_objective.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("my_objective")
    yield "sft_half"
    OBJECTIVES.pop("sft_half", None)
    sys.modules.pop("my_objective", None)


def test_a_registered_objective_is_planned_trained_and_labelled(new_objective, base_dir, tmp_path):
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.models import load_model
    from giftlab.training.sft import SFTSettings, train_sft

    config = deep_merge(load_config(REPO / "params.yaml"), {"sft": {"methods": ["sft", "gift", new_objective]}})
    validate_config(config)
    plan = Plan(config)
    assert new_objective in plan.sft_runs() and new_objective in plan.rl_runs()
    job = plan.job("sft", {"backbone": "qwen", "run": new_objective})
    assert (job["method"], job["beta"]) == (new_objective, None)

    rows = [{"question": f"Start with {i}. Add 1.", "final_answer": str(i + 1), "r1_solution_1": f"\\boxed{{{i + 1}}}"}
            for i in range(8)]
    metrics = train_sft(base_path=str(base_dir), tokenizer=build_tokenizer(), load_model=load_model,
                        train_rows=rows[:6], val_rows=rows[6:], solution_key="r1_solution_1", method=job["method"],
                        objective_params=job["objective_params"],
                        settings=SFTSettings(epochs=1, batch_size=2, lr=1e-3, max_length=64, seed=0),
                        out_dir=tmp_path / "out", work_dir=tmp_path / "work", job_config=job)
    assert metrics["epochs"] and all(e["val_loss"] > 0 for e in metrics["epochs"])

    summaries = [{"pass@1": 0.5, "provenance": {"config": {"stage": "rl", "backbone": "qwen", "run": run,
                                                           "benchmark": "tiny_id"}}} for run in plan.rl_runs()]
    df = T.table1(summaries, run_specs=plan.run_table())
    gift = [f"GIFT (β={b:g})" for b in sorted(config["sft"]["gift_betas"])]
    direct = ["Direct RL"] if config["grpo"].get("direct_rl") else []
    unified = [plan.run_table()[r]["label"] for r in plan.unified_runs()]  # LUFFY, ReLIFT (config unified.methods)
    # the paper's row order: the baselines, then the objectives in registry order (the new one last)
    assert list(df["strategy"]) == [*direct, *unified, "SFT", *gift, "SFT / 2"]


def test_an_unknown_objective_is_named_in_one_line():
    config = deep_merge(load_config(REPO / "params.yaml"), {"sft": {"methods": ["sft", "sft_halff"]}})
    with pytest.raises(ConfigError, match=r"sft.methods\[1\]: unknown objective 'sft_halff' \(known: sft, ") as exc:
        validate_config(config)
    assert "\n" not in str(exc.value) and "src/giftlab/objectives/__init__.py imports its module" in str(exc.value)


@pytest.fixture
def registry():
    """Objectives registered by a test are removed after it."""
    before = set(OBJECTIVES)
    yield OBJECTIVES
    for name in set(OBJECTIVES) - before:
        OBJECTIVES.pop(name)


def _per_token(batch, **hp):
    import torch

    return -torch.log_softmax(batch.logits.double(), -1).gather(-1, batch.labels[:, None])[:, 0]


@pytest.mark.parametrize("kwargs,message", [
    ({"label": "SFT"}, r"^objective 'mine': label 'SFT' is taken by objective 'sft' "),
    ({"beta_swept": True}, r"^objective 'mine': beta_swept=True needs a 'beta' default"),
    ({"validate": lambda hp: hp["epsilon"]}, r"^objective 'mine': its validator reads hyperparameter 'epsilon', "
                                              r"which has no default"),
    ({"defaults": {"eps": 0.1}, "fn": lambda batch, *, epsilon: batch}, r"^objective 'mine': <lambda>\(batch, "
                                                                       r"\*\*\['eps'\]\) cannot be called"),
    ({"fn": lambda batch, *, eps: batch}, r"^objective 'mine': <lambda>\(batch, \*\*\[\]\) cannot be called .*"
                                         r"missing a required argument: 'eps'"),
    ({"defaults": {"eps": 2.0}, "validate": __import__("giftlab.objectives.base", fromlist=["x"]).check_range(
        "mine", "eps", 0.0, 1.0)}, r"^objective 'mine': its own defaults fail its validator: .*eps must be in"),
])
def test_a_registration_that_cannot_work_is_refused_when_its_module_is_imported(registry, kwargs, message):
    from giftlab.objectives import register

    fn = kwargs.pop("fn", _per_token)
    with pytest.raises(ValueError, match=message):
        register("mine", **kwargs)(fn)
    assert "mine" not in registry


def test_a_reduced_loss_or_a_hyperparameter_without_default_is_one_line_when_the_job_starts(registry):
    from giftlab.objectives import get_objective, register

    register("mine_mean")(lambda batch: _per_token(batch).mean())
    register("mine_eps", defaults={"lam": 0.1})(lambda batch, **hp: _per_token(batch) * (1 - hp["epsilon"]))
    with pytest.raises(ValueError, match=r"^objective 'mine_mean': returned shape \(\), expected \[N\] = \(3,\) "
                                         r"\(one loss per token, not reduced\)$"):
        get_objective("mine_mean").probe()
    with pytest.raises(ValueError, match=r"^objective 'mine_eps': KeyError 'epsilon' in its function: a "
                                         r"hyperparameter without a default in its register\(defaults=\.\.\.\)\? "
                                         r"\(it has: \['lam'\]\)$"):
        get_objective("mine_eps").probe()
    for name in set(OBJECTIVES) - {"mine_mean", "mine_eps"}:  # the project's own pass, each with its defaults
        get_objective(name).probe()


def test_the_grid_refuses_an_objective_under_a_baseline_s_id_and_table5_an_objective_without_rl(registry):
    from giftlab.objectives import register

    register("direct_sft", label="Mine")(_per_token)
    config = deep_merge(load_config(REPO / "params.yaml"), {"sft": {"methods": ["sft", "gift", "direct_sft"]}})
    with pytest.raises(ConfigError, match=r"sft.methods\[2\]: objective 'direct_sft' has the run id of a baseline"):
        validate_config(config)
    config = deep_merge(load_config(REPO / "params.yaml"), {"grpo": {"runs": ["sft"]},
                                                             "mtbench": {"methods": ["sft", "gift"]}})
    with pytest.raises(ConfigError, match=r"mtbench.methods: 'gift' has no GRPO run \(grpo.runs leaves it out\)"):
        validate_config(config)


def test_objective_params_of_an_objective_not_yet_planned_are_checked_too():
    config = deep_merge(load_config(REPO / "params.yaml"),
                        {"sft": {"methods": ["sft", "gift"], "objective_params": {"sft_ls": {"lambdda": 0.1}}}})
    with pytest.raises(ConfigError, match=r"sft.objective_params.sft_ls: objective 'sft_ls': unknown hyperparameter "
                                          r"'lambdda'"):
        validate_config(config)

