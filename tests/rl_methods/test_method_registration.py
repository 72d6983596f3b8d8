"""Adding an RL-stage method is one module: registered, it is validated, planned as a run from the base model,
trained by TRL's GRPOTrainer with its mixin, and labelled in Table 1, with nothing else changed."""

from __future__ import annotations

import importlib
import sys

import pytest

from giftlab.cli import ConfigError
from giftlab.config import deep_merge, load_config, validate_config
from giftlab.plan import Plan
from giftlab.reporting import tables as T
from giftlab.rl_methods import RL_METHODS
from helpers import REPO

MODULE = '''
"""A new RL method, as a user would add it: GRPO whose advantages are doubled."""
from giftlab.rl_methods import RLMethod, register


class DoubledMixin:
    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        output["advantages"] = output["advantages"] * self.method_params["factor"]
        self._metrics["train"]["x2/factor"].append(self.method_params["factor"])
        return output


register(RLMethod(name="grpo_x2", label="GRPO x2", method_class="Unified Paradigms", defaults={"factor": 2.0},
                  mixin="my_rl_method:DoubledMixin"))
'''


@pytest.fixture
def new_method(tmp_path, monkeypatch):
    (tmp_path / "my_rl_method.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("my_rl_method")
    yield "grpo_x2"
    RL_METHODS.pop("grpo_x2", None)
    sys.modules.pop("my_rl_method", None)


def test_a_registered_method_is_planned_trained_and_labelled(new_method, base_dir, tmp_path):
    from giftlab.models import load_model
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.grpo import train_grpo

    config = deep_merge(load_config(REPO / "params.yaml"), {"unified": {"methods": [new_method],
                                                                         new_method: {"factor": 3}}})
    validate_config(config)
    plan = Plan(config)
    assert plan.unified_runs() == [new_method] and new_method in plan.rl_runs()
    assert plan.grpo_init("qwen", new_method) == plan.grpo_init("qwen", "direct_rl")  # from the base model
    job = plan.job("grpo", {"backbone": "qwen", "run": new_method})
    assert (job["rl_method"], job["method_params"]) == (new_method, {"factor": 3.0})

    rows = [{"question": f"Start with {i}. Add 1.", "final_answer": str(i + 1)} for i in range(4)]
    cfg = dict(max_steps=1, lr=1e-3, lr_scheduler="constant", num_generations=2, prompts_per_generation=2,
               prompts_per_update=2, temperature=1.0, max_completion_length=6, save_steps=1, grading_timeout=10)
    metrics = train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(), rl_rows=rows,
                         cfg=cfg, seed=0, out_dir=tmp_path / "out", work_dir=tmp_path / "work", job_config=job,
                         rl_method=job["rl_method"], method_params=job["method_params"])
    assert metrics["steps"] == 1 and metrics["rl_method"] == new_method
    assert metrics["log"][0]["x2/factor"] == 3.0  # the mixin ran, with the configured hyperparameter

    summaries = [{"pass@1": 0.5, "provenance": {"config": {"stage": "rl", "backbone": "qwen", "run": run,
                                                           "benchmark": "tiny_id"}}} for run in plan.rl_runs()]
    df = T.table1(summaries, run_specs=plan.run_table())
    row = df[df["run"] == new_method].iloc[0]
    assert (row["strategy"], row["method_class"]) == ("GRPO x2", "Unified Paradigms")


def test_an_unknown_method_or_key_is_named_in_one_line():
    config = deep_merge(load_config(REPO / "params.yaml"), {"unified": {"methods": ["luffy", "lufy"]}})
    with pytest.raises(ConfigError, match=r"unified.methods\[1\]: unknown RL method 'lufy'") as exc:
        validate_config(config)
    assert "\n" not in str(exc.value)
    config = deep_merge(load_config(REPO / "params.yaml"), {"unified": {"luffy": {"shaping_gama": 0.2}}})
    with pytest.raises(ConfigError, match=r"unified.luffy.shaping_gama: unknown key") as exc:
        validate_config(config)


def test_the_schema_lists_each_registered_methods_hyperparameters():
    """`unified.<method>` in the schema names exactly the registry's keys (a user reads them there); a method the
    schema does not list is still checked by the registry (additionalProperties)."""
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "params.schema.yaml").read_text())
    listed = {name: spec for name, spec in schema["properties"]["unified"]["properties"].items() if name != "methods"}
    assert set(listed) == set(RL_METHODS)
    for name, spec in listed.items():
        assert set(spec["properties"]) == set(RL_METHODS[name].defaults), name
        for key, default in RL_METHODS[name].defaults.items():
            assert spec["properties"][key]["type"] == ("integer" if isinstance(default, int) else "number"), key


def test_a_mistyped_key_under_a_method_is_one_line_from_the_schema_check():
    config = deep_merge(load_config(REPO / "params.yaml"), {"unified": {"relift": {"sft_batch": "many"}}})
    with pytest.raises(ConfigError, match=r"unified.relift.sft_batch") as exc:
        validate_config(config)
    assert "\n" not in str(exc.value)
