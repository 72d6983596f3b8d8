"""GRPO rollouts end at the chat template's end of turn (giftlab.data.turn_end_ids), on both of TRL's generation
paths: colocated vLLM (the paper profile) gets it as a request stop id, the transformers path as one of the model's
eos ids; the export keeps the checkpoint's own generation config. On the rehearsal's Qwen2.5 stand-in (ChatML,
EOS <|endoftext|>, end of turn <|im_end|>): a base prompted in ChatML (Direct RL, LUFFY, ReLIFT) ends its turn with
<|im_end|>, and its rollouts ran on past it until EOS or grpo.max_completion_length, the reward grading the last
\\boxed{} of whatever followed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from helpers import build_rehearsal, patch_trl_vllm, restore_environ

GRPO = dict(max_steps=1, lr=1e-3, lr_scheduler="constant", num_generations=2, prompts_per_generation=2,
            prompts_per_update=2, temperature=1.0, max_completion_length=6, save_steps=5, grading_timeout=10)
RL_ROWS = [{"question": f"Start with {i}. Add 1. What is the result?", "final_answer": str(i + 1)} for i in range(4)]


@pytest.fixture(scope="module")
def qwen_like(tmp_path_factory):
    return build_rehearsal(tmp_path_factory.mktemp("work") / "rehearsal", 8) / "models" / "Qwen2.5-rehearsal"


class FakeLLM:
    params: list = []

    def __init__(self, *, max_model_len=None, **_):
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=max_model_len))

    def sleep(self, level=1):
        pass

    def wake_up(self, tags=None):
        pass

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        FakeLLM.params.append(sampling_params)
        out = []
        for prompt in prompts:
            tokens = [10, 11, 12]
            out.append(SimpleNamespace(prompt_token_ids=prompt["prompt_token_ids"], outputs=[SimpleNamespace(
                token_ids=tokens, logprobs=[{t: SimpleNamespace(rank=1, logprob=-1.0)} for t in tokens])]))
        return out


@pytest.fixture
def fake_vllm(monkeypatch):
    environ = patch_trl_vllm(monkeypatch, FakeLLM)
    FakeLLM.params = []
    yield FakeLLM
    restore_environ(environ)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def run(path, root, cfg, callbacks=()):
    from giftlab.models import load_model, load_tokenizer
    from giftlab.training.grpo import train_grpo

    train_grpo(init_path=str(path), load_model=load_model, tokenizer=load_tokenizer(path), rl_rows=RL_ROWS, cfg=cfg,
               seed=0, out_dir=root / "model", work_dir=root / "work", job_config={"grpo": cfg, "seed": 0},
               extra_callbacks=callbacks)


def test_colocated_vllm_rollouts_stop_at_the_end_of_turn(qwen_like, tmp_path, fake_vllm):
    from giftlab.models import load_tokenizer

    im_end = load_tokenizer(qwen_like).convert_tokens_to_ids("<|im_end|>")
    run(qwen_like, tmp_path, {**GRPO, "use_vllm": True})
    assert FakeLLM.params and all(im_end in p.stop_token_ids for p in FakeLLM.params)
    saved = json.loads((qwen_like / "generation_config.json").read_text())["eos_token_id"]
    assert json.loads((tmp_path / "model" / "generation_config.json").read_text())["eos_token_id"] == saved


def test_transformers_rollouts_stop_at_the_end_of_turn(qwen_like, tmp_path):
    from transformers import TrainerCallback

    from giftlab.models import load_tokenizer

    tok = load_tokenizer(qwen_like)
    seen = []

    class Eos(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen.append(model.generation_config.eos_token_id)

    run(qwen_like, tmp_path, GRPO, callbacks=[Eos()])
    assert seen == [[tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]]
