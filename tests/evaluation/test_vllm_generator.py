"""VLLMGenerator's requests and answers, with a stand-in for vLLM's offline API (vLLM does not install on CPU): one
request per (prompt, sample) with its own seed, greedy sampling asked once per prompt (as HFGenerator does), the
answer cut at the first stop token, and a prompt with no room in ``max_model_len`` named before vLLM sees the call."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from giftlab.evaluation.generation import VLLMGenerator, sample_seed
from giftlab.models import load_tokenizer


class FakeLLM:
    """vLLM's ``LLM`` as the generator calls it: ``generate(requests, params, use_tqdm)`` → one output per request,
    in order, each ``outputs[0]`` with ``token_ids`` and ``finish_reason``."""

    calls: list = []

    def __init__(self, model, **kwargs):
        self.kwargs = kwargs

    def generate(self, requests, params, use_tqdm=True):
        FakeLLM.calls.append((requests, params))
        eos = FakeLLM.eos
        # the answer depends on the request's seed: tokens 5, 6 then EOS, then one token vLLM may add after it
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=[5 + p.seed % 3, 6, eos, 7], finish_reason="stop")])
                for p in params]


@pytest.fixture
def fake_vllm(monkeypatch, base_dir):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = lambda **kwargs: SimpleNamespace(**kwargs)
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.calls, FakeLLM.eos = [], load_tokenizer(base_dir).eos_token_id
    return base_dir


def test_one_request_per_sample_each_with_its_seed(fake_vllm):
    gen = VLLMGenerator(fake_vllm, max_model_len=64)
    out = gen.generate(["ab", "cd"], n=3, temperature=0.6, top_p=1.0, max_new_tokens=8, seed=11)
    (requests, params), = FakeLLM.calls
    assert len(requests) == 6 and [p.seed for p in params] == [sample_seed(11, q, i) for q in ("ab", "cd")
                                                                for i in range(3)]
    assert all(p.temperature == 0.6 and p.max_tokens == 8 and p.n == 1 for p in params)
    assert [[s.seed for s in row] for row in out] == [[p.seed for p in params[:3]], [p.seed for p in params[3:]]]
    assert all(s.num_tokens == 3 and s.finish_reason == "stop" for row in out for s in row)  # cut after EOS


def test_greedy_asks_once_per_prompt_and_copies_the_answer(fake_vllm):
    gen = VLLMGenerator(fake_vllm)
    out = gen.generate(["ab", "cd"], n=4, temperature=0, top_p=1.0, max_new_tokens=8, seed=11)
    (requests, params), = FakeLLM.calls
    assert len(requests) == 2  # was 8 identical greedy requests
    for row, prompt, p in zip(out, ("ab", "cd"), params):
        assert len(row) == 4 and len({s.text for s in row}) == 1 and row[0].text == gen.tokenizer.decode(
            [5 + p.seed % 3, 6, FakeLLM.eos], skip_special_tokens=True)
        assert [s.seed for s in row] == [sample_seed(11, prompt, i) for i in range(4)]


def test_a_prompt_without_room_in_max_model_len_is_named(fake_vllm):
    gen = VLLMGenerator(fake_vllm, max_model_len=10)
    with pytest.raises(ValueError, match=r"prompt 2 of 2 has 1\d tokens, no room left in max_model_len 10 "
                                         r"\(eval.vllm.max_model_len\)"):
        gen.generate(["ab", "x" * 12], n=1, temperature=0.6, top_p=1.0, max_new_tokens=8, seed=0)
    assert FakeLLM.calls == []  # vLLM never saw the call


def test_close_shuts_the_engine_down(fake_vllm):
    """vLLM 0.31.0's engine core holds the weights and KV cache in a process of its own until its client's shutdown
    (LLM has no close of its own): giftlab.evaluation.job closes a generator before loading another."""
    gen = VLLMGenerator(fake_vllm)
    stopped = []
    gen.llm.llm_engine = SimpleNamespace(engine_core=SimpleNamespace(shutdown=lambda: stopped.append(True)))
    gen.close()
    assert stopped == [True] and gen.llm is None
