"""The random stream of GRPO's colocated vLLM rollouts (the paper profile: grpo.use_vllm, TRL's vllm_mode="colocate").

TRL 1.16 builds each process's engine with ``LLM(..., seed=accelerator.process_index // tensor_parallel_size,
distributed_executor_backend="external_launcher")`` (trl/generation/vllm_generation.py, ``_init_vllm``): not from
``args.seed``. Under the external launcher vLLM runs in the training process (vllm 0.31 config/parallel.py sets
VLLM_ENABLE_V1_MULTIPROCESSING=0), and its worker calls ``set_random_seed(model_config.seed)`` twice while the engine
is built (v1/worker/gpu_worker.py, ``init_device`` and ``compile_or_warm_up_model``): python, numpy, torch and every
CUDA device's generator of the training process, reseeded with the rank. A request without its own seed then draws
from those global generators (model runner V2: ``np.random.randint`` per request, v1/worker/gpu/sample/states.py;
V1: the device's default generator, v1/sample/ops/topk_topp_sampler.py). So every training seed sampled the same
rollout noise on rank r. No vLLM here: a stand-in with vLLM's seeding and its per-request draw.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import patch_trl_vllm, restore_environ

GRPO = dict(max_steps=4, lr=1e-3, lr_scheduler="constant", num_generations=2, prompts_per_generation=2,
            prompts_per_update=2, temperature=1.0, max_completion_length=6, save_steps=2, grading_timeout=10,
            use_vllm=True)
RL_ROWS = [{"question": f"Start with {i}. Add {i % 5 + 1}. What is the result?",
            "final_answer": str(i + i % 5 + 1)} for i in range(1, 9)]


def vllm_set_random_seed(seed):
    """vllm/utils/torch_utils.py ``set_random_seed`` (CPU: no device generators here)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class FakeLLM:
    """vLLM's in-process engine, as far as its randomness goes."""

    engine_seeds: list = []
    drawn: list = []

    def __init__(self, *, seed, max_model_len=None, **_):
        FakeLLM.engine_seeds.append(seed)
        vllm_set_random_seed(seed)  # init_device
        vllm_set_random_seed(seed)  # compile_or_warm_up_model
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=max_model_len))
        self.vocab = None

    def sleep(self, level=1):
        pass

    def wake_up(self, tags=None):
        pass

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        out = []
        for prompt in prompts:
            # a request without its own seed: one from numpy's global generator (model runner V2, states.py:57)
            seed = int(np.random.randint(0, 2**31 - 1))
            tokens = torch.randint(10, 40, (4,), generator=torch.Generator().manual_seed(seed)).tolist()
            FakeLLM.drawn.append(seed)
            logprobs = [{t: SimpleNamespace(rank=1, logprob=-1.0)} for t in tokens]
            out.append(SimpleNamespace(prompt_token_ids=prompt["prompt_token_ids"],
                                       outputs=[SimpleNamespace(token_ids=tokens, logprobs=logprobs)]))
        return out


@pytest.fixture
def fake_vllm(monkeypatch):
    environ = patch_trl_vllm(monkeypatch, FakeLLM)
    FakeLLM.engine_seeds, FakeLLM.drawn = [], []
    yield FakeLLM
    restore_environ(environ)
    if torch.distributed.is_initialized():  # the one-process group TRL starts for vLLM's external launcher: a
        torch.distributed.destroy_process_group()  # later test's processes forked from this one would inherit it


def run(base_dir, root, seed, callbacks=(), cfg=GRPO):
    from giftlab.models import load_model
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.grpo import train_grpo

    start = len(FakeLLM.drawn)
    metrics = train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(), rl_rows=RL_ROWS,
                         cfg=cfg, seed=seed, out_dir=root / "model", work_dir=root / "work",
                         job_config={"grpo": cfg, "seed": seed}, extra_callbacks=callbacks)
    return metrics, FakeLLM.drawn[start:]


def test_the_training_seed_reaches_colocated_vllm_sampling(base_dir, tmp_path, fake_vllm):
    _, first = run(base_dir, tmp_path / "a", seed=0)
    _, again = run(base_dir, tmp_path / "b", seed=0)
    _, other = run(base_dir, tmp_path / "c", seed=1)
    assert len(first) == len(other) == 4 * 4  # 4 rollout batches of 2 prompts x 2 completions
    assert first == again  # the same seed: the same rollout noise
    # another seed (config `seeds:`): other rollout noise, not the rank's (it was the same list for seeds 0 and 1)
    assert not set(first) & set(other), (first, other)


def test_a_resumed_run_continues_the_rollout_stream(base_dir, tmp_path, fake_vllm):
    from giftlab.training.preemption import Preempted
    from test_preemption import SignalSelf

    _, straight = run(base_dir, tmp_path / "straight", seed=3)
    with pytest.raises(Preempted):
        run(base_dir, tmp_path / "resumed", seed=3, callbacks=[SignalSelf(2)])
    metrics, after = run(base_dir, tmp_path / "resumed", seed=3)
    assert metrics["resumed_from"].endswith("checkpoint-2")
    assert after == straight[2 * 4:]  # steps 3-4 draw what the uninterrupted run drew there


@pytest.mark.parametrize("num_processes", [1, 2])
def test_policy_generation_on_several_processes_draws_a_stream_per_seed_and_rank(num_processes):
    """No vLLM (config/rehearsal.yaml: 2 CPU processes): TRL seeds each process's global state args.seed + rank
    (set_seed(..., device_specific=True)) and generates from it, so training seed 1's rank 1 drew seed 2's rank 0
    noise. One process keeps args.seed (the tiny and replication profiles' rollouts stay as they were)."""
    from accelerate.utils import set_seed as accelerate_set_seed

    from giftlab.training.rollout_state import SeededColocatedVLLM

    class TRLStandIn:
        def __init__(self, seed, rank):
            self.use_vllm, self.args = False, SimpleNamespace(seed=seed, vllm_tensor_parallel_size=1)
            self.accelerator = SimpleNamespace(process_index=rank, num_processes=num_processes)
            accelerate_set_seed(seed + rank)  # TRL's set_seed(args.seed, device_specific=True)

    class Trainer(SeededColocatedVLLM, TRLStandIn):
        pass

    def noise(seed, rank):
        Trainer(seed, rank)
        return torch.rand(8).tolist()

    streams = {(seed, rank): noise(seed, rank) for seed in (1, 2, 3) for rank in range(num_processes)}
    assert len({tuple(v) for v in streams.values()}) == len(streams)
    assert noise(2, num_processes - 1) == streams[(2, num_processes - 1)]
    if num_processes == 1:
        got = noise(5, 0)
        torch.manual_seed(5)
        assert got == torch.rand(8).tolist()  # one process: the stream of args.seed, as before
