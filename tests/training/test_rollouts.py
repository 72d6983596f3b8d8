"""GRPO's fast rollouts return what transformers' ``generate`` returns, and leave the random stream where it would."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import GenerationConfig

from giftlab.models import build_tiny_model, load_model
from giftlab.training.rollouts import NEUTRAL, READ, effective_config, fast_path_refusal, use_fast_rollouts

EOS, PAD = 2, 0


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return build_tiny_model("qwen2", vocab_size=48, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=32, seed=0)


def batch(copies: int):
    """Three prompts of different lengths, left-padded, each repeated ``copies`` times in a row (as TRL batches)."""
    prompts = [[5, 9, 11, 7, 30], [12, 40], [33, 8, 8, 21]]
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts for _ in range(copies)])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts for _ in range(copies)])
    return ids, mask


def config(**overrides):
    # the fields TRL's GRPOTrainer sets for plain GRPO (giftlab.training.grpo.grpo_arguments)
    fields = dict(max_new_tokens=40, do_sample=True, pad_token_id=PAD, bos_token_id=1, eos_token_id=[EOS],
                  temperature=1.0, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0, disable_compile=True)
    return GenerationConfig(**{**fields, **overrides})


def refusal(model, generation_config):
    ids, mask = batch(copies=2)
    return fast_path_refusal(model, effective_config(model, generation_config), {"input_ids": ids, "attention_mask": mask})


def both_ways(model, ids, mask, generation_config, seed=7):
    torch.manual_seed(seed)
    with torch.no_grad():
        expected = model.generate(input_ids=ids, attention_mask=mask, generation_config=generation_config)
    expected_state = torch.get_rng_state()
    fast = build_tiny_model("qwen2", vocab_size=48, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=32, seed=0)
    fast.train(model.training)
    use_fast_rollouts(fast)
    torch.manual_seed(seed)
    got = fast.generate(input_ids=ids, attention_mask=mask, generation_config=generation_config)
    return expected, got, expected_state, torch.get_rng_state()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("training", [False, True])
def test_the_same_tokens_and_random_state_as_generate(model, temperature, training):
    model.train(training)  # TRL generates with the policy in train mode
    ids, mask = batch(copies=8)
    assert refusal(model, config(temperature=temperature)) is None
    expected, got, expected_state, state = both_ways(model, ids, mask, config(temperature=temperature))
    completions = expected[:, ids.shape[1]:]
    ended = (completions == EOS).any(dim=1)
    assert 0 < int(ended.sum()) < len(ended)  # some rows end early, so rows really are dropped
    assert torch.equal(got, expected)
    assert torch.equal(state, expected_state)  # the next batch draws the same numbers


def test_rows_that_all_run_to_the_length_limit(model):
    ids, mask = batch(copies=2)
    expected, got, expected_state, state = both_ways(model, ids, mask, config(max_new_tokens=3))
    assert got.shape == expected.shape == (6, ids.shape[1] + 3)
    assert torch.equal(got, expected) and torch.equal(state, expected_state)


@pytest.mark.parametrize("overrides,reason", [
    ({"top_k": 5}, "top_k=5"), ({"top_k": None}, "top_k=50"),  # generate's own default is 50
    ({"top_p": 0.9}, "top_p=0.9"), ({"repetition_penalty": 1.1}, "repetition_penalty=1.1"),
    ({"max_time": 5.0}, "max_time=5.0"), ({"use_cache": False}, "use_cache=False"),
    ({"do_sample": False}, "not sampling")])
def test_other_settings_go_to_generate_itself(model, caplog, overrides, reason):
    ids, mask = batch(copies=2)
    assert refusal(model, config(**overrides)) == reason
    with caplog.at_level(logging.INFO, logger="giftlab.training.rollouts"):
        expected, got, _, _ = both_ways(model, ids, mask, config(**overrides))
    assert torch.equal(got, expected)
    assert f"rollouts through transformers' generate ({reason})" in caplog.text


def test_every_generation_setting_is_judged():
    """A field transformers adds (or renames) must be placed in the table before the fast path can take it."""
    assert set(GenerationConfig().to_dict()) == READ | set(NEUTRAL)


def test_the_models_own_defaults_count_unless_the_call_sets_them(model):
    saved = model.generation_config
    model.generation_config = GenerationConfig(top_k=20, repetition_penalty=1.05)  # e.g. Qwen2.5's
    try:
        assert refusal(model, config(top_k=None)) == "top_k=20"
        assert refusal(model, config(repetition_penalty=None)) == "repetition_penalty=1.05"
        assert refusal(model, config()) is None  # TRL sets both: its values win
    finally:
        model.generation_config = saved


def test_dropout_in_train_mode_is_refused():
    noisy = build_tiny_model("qwen2", vocab_size=48, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, seed=0, attention_dropout=0.1)
    noisy.train()
    assert refusal(noisy, config()) == "dropout in train mode"
    noisy.eval()
    assert refusal(noisy, config()) is None


def test_a_grpo_run_trains_the_same_policy_either_way(base_dir, tmp_path, monkeypatch):
    """Through TRL: three GRPO steps with the fast rollouts and with generate itself log the same rewards and
    completion lengths and end in the same weights."""
    import giftlab.training.rollouts as rollouts
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.grpo import train_grpo

    rows = [{"question": f"Start with {i}. Add {i % 5 + 1}. What is the result?", "final_answer": str(i + i % 5 + 1)}
            for i in range(1, 9)]
    cfg = dict(max_steps=3, lr=1e-3, lr_scheduler="constant", num_generations=4, prompts_per_generation=2,
               prompts_per_update=2, temperature=1.0, max_completion_length=24, save_steps=3, grading_timeout=10)
    fast_calls = []
    sample = rollouts.sample_like_generate
    monkeypatch.setattr(rollouts, "sample_like_generate", lambda *a: fast_calls.append(1) or sample(*a))
    runs = {}
    for name in ("fast", "generate"):
        if name == "generate":
            monkeypatch.setattr(rollouts, "use_fast_rollouts", lambda model: None)
        metrics = train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(), rl_rows=rows,
                             cfg=cfg, seed=0, out_dir=tmp_path / name, work_dir=tmp_path / f"work_{name}",
                             job_config={"grpo": cfg})
        keep = ("reward", "completions/mean_length", "completions/max_length", "loss", "grad_norm")
        runs[name] = ([{k: row.get(k) for k in keep} for row in metrics["log"]],
                      (tmp_path / name / "model.safetensors").read_bytes())
    assert len(fast_calls) == 3  # one batch of rollouts per step went the fast way
    assert runs["fast"][0] == runs["generate"][0]
    assert runs["fast"][1] == runs["generate"][1]


def test_the_benchmark_finds_every_batch_identical(base_dir, tmp_path, capsys):
    """benchmarks/rollout_paths.py (docs/speed.md's table) on a small saved model: its check holds."""
    import importlib.util
    import json

    from helpers import REPO

    spec = importlib.util.spec_from_file_location("rollout_paths", REPO / "benchmarks" / "rollout_paths.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rl = tmp_path / "rl.jsonl"
    rl.write_text("".join(json.dumps({"question": f"Start with {i}. Add 3. What is the result?",
                                      "final_answer": str(i + 3)}) + "\n" for i in range(8)))
    bench.main(["--model", str(base_dir), "--rl", str(rl), "--steps", "2", "--prompts", "2", "--generations", "4",
                "--max-new-tokens", "16", "--repeats", "1"])
    assert capsys.readouterr().out.rstrip().endswith("| 2/2 |")


def test_calls_the_fast_path_does_not_know_go_to_generate_itself(model, monkeypatch, caplog):
    ids, mask = batch(copies=2)
    assert refusal(model, config()) is None
    assert fast_path_refusal(model, effective_config(model, config()), {"input_ids": ids}) == "arguments ['input_ids']"
    import giftlab.training.rollouts as rollouts

    def gone(*_):
        raise AttributeError("_prepare_generation_config")

    monkeypatch.setattr(rollouts, "effective_config", gone)  # e.g. a transformers release without the method
    with caplog.at_level(logging.INFO, logger="giftlab.training.rollouts"):
        expected, got, _, _ = both_ways(model, ids, mask, config())
    assert torch.equal(got, expected)
    assert "rollouts through transformers' generate (effective config: AttributeError)" in caplog.text
