import math

import pytest

from giftlab.cli import ConfigError
from giftlab.config import (benchmarks, beta_of, deep_merge, final_models, load_config, objective_of, parse_run,
                            rl_runs, run_name, sft_runs, validate_config)
from helpers import REPO, snakemake, write_override

PARAMS = REPO / "params.yaml"
PROFILES = sorted((REPO / "config").glob("*.yaml"))


@pytest.mark.parametrize("profile", [None, *PROFILES], ids=lambda p: "params" if p is None else p.name)
def test_every_profile_validates(profile):
    paths = [PARAMS] + ([profile] if profile else [])
    config = load_config(*paths)
    assert sft_runs(config)


def test_run_names_round_trip():
    assert run_name("sft") == "sft"
    assert run_name("gift", 10) == "gift-b10"
    assert run_name("gift", 0.5) == "gift-b0.5"
    for name in ["sft", "gift-b10", "gift-b0.5", "sft_kd", "dft", "direct_sft"]:
        method, beta = parse_run(name)
        assert run_name(method, beta) == name
    assert beta_of("sft") == math.inf
    with pytest.raises(ConfigError):
        parse_run("Gift b3")


def test_grid_expands_betas_and_filters_rl_runs():
    config = load_config(PARAMS)
    config = deep_merge(config, {"sft": {"methods": ["sft", "gift"], "gift_betas": [1, 3], "direct_sft": True},
                                 "grpo": {"runs": ["gift-b3"], "direct_rl": True}})
    assert sft_runs(config) == ["sft", "gift-b1", "gift-b3", "direct_sft"]
    assert rl_runs(config) == ["gift-b3", "direct_rl"]  # Direct SFT never goes to RL
    assert final_models(config) == [("rl", "gift-b3"), ("rl", "direct_rl"), ("sft", "direct_sft")]
    assert objective_of("direct_sft") == ("sft", None)
    assert benchmarks(config, "ood") == ["tiny_ood", "tiny_family", "tiny_mc"]
    assert benchmarks(config, "reasoning") == ["tiny_id"]


BAD = [
    ({"sft": {"methods": ["sft", "magic"]}}, "sft.methods[1]"),
    ({"sft": {"gift_betas": [3, -1]}}, "sft.gift_betas[1]"),
    ({"sft": {"epochs": "three"}}, "sft.epochs"),
    ({"eval": {"n_samples": 0}}, "eval.n_samples"),
    ({"sft": {"rl_epoch": 9}}, "sft.rl_epoch"),
    ({"figures": {"fig1": {"backbones": ["gpt"]}}}, "figures.fig1.backbones"),
    ({"eval": {"ood": ["mmlu"]}}, "eval.ood"),
]


@pytest.mark.parametrize("override,key", BAD, ids=[k for _, k in BAD])
def test_bad_values_name_the_key(override, key):
    config = deep_merge(load_config(PARAMS), override)
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    message = str(err.value)
    assert key in message and "\n" not in message


def test_missing_key_is_named():
    config = load_config(PARAMS)
    del config["grpo"]["lr"]
    with pytest.raises(ConfigError, match=r"missing required key 'grpo\.lr'"):
        validate_config(config)


@pytest.mark.parametrize("override,key", [BAD[0], BAD[1], BAD[2]], ids=["unknown method", "negative beta", "wrong type"])
def test_snakemake_stops_before_any_job_with_one_line(tmp_path, override, key):
    bad = write_override(tmp_path / "bad.yaml", override)
    result = snakemake(tmp_path, "-n", configfiles=[bad], timeout=120)
    assert result.returncode != 0
    lines = [l for l in (result.stderr + result.stdout).splitlines() if l.strip()]
    errors = [l for l in lines if key in l]
    assert errors, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()
