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
import torch.nn.functional as F

from giftlab.objectives import register


@register("sft_half", label="SFT / 2", full_vocab=False)
def sft_half(batch):
    """l = -0.5 log pi_theta(y*)."""
    return 0.5 * F.cross_entropy(batch.logits.float(), batch.labels, reduction="none")
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
    assert "\n" not in str(exc.value)
