"""LUFFY's step-log diagnostics under several processes (the paper's 8-GPU job): 2 forked processes over gloo."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import torch

from giftlab.rl_methods.luffy import LuffyMixin
from helpers import together


class _Loss(LuffyMixin):
    """LuffyMixin._compute_loss with the policy's log-probs given (no model) and accelerate's gather over gloo."""

    def __init__(self, logps):
        import torch.distributed as dist

        def gather(t):  # as accelerate's: a 0-dim tensor gathers as one element
            t = t.reshape(-1)
            parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, t)
            return torch.cat(parts)

        self.logps = logps
        self.method_params = {"shaping_gamma": 0.1, "entropy_coef": 0.0, "expert_samples": 1}
        self.max_completion_length = 2
        self.current_gradient_accumulation_steps = 1
        self.model = SimpleNamespace(training=True)
        self.accelerator = SimpleNamespace(gather=gather)
        self._metrics = {"train": defaultdict(list)}

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, n, compute_entropy=True):
        return self.logps, torch.zeros_like(self.logps), None


def _inputs(mask, is_expert):
    mask = torch.tensor(mask)
    return {"completion_ids": torch.zeros_like(mask), "completion_mask": mask,
            "prompt_ids": torch.zeros(len(mask), 1, dtype=torch.long), "prompt_mask": torch.ones(len(mask), 1),
            "advantages": torch.zeros(len(mask)), "is_expert": torch.tensor(is_expert)}


def _micro_batches(rank, results, store):
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
        # micro-batch 1: process 0 holds 1 expert token at p = 0.2, process 1 two at p = 0.8 (pooled: 0.6)
        # micro-batch 2: process 0 holds no expert row, process 1 one expert token at p = 0.8
        p = [[0.2, 0.5], [0.5, 0.5]] if rank == 0 else [[0.8, 0.8], [0.5, 0.5]]
        trainer = _Loss(torch.tensor(p).log())
        trainer._compute_loss(None, _inputs([[1, 0], [1, 1]] if rank == 0 else [[1, 1], [1, 1]], [True, False]))
        trainer.logps = torch.tensor([[0.5, 0.5], [0.5, 0.5]] if rank == 0 else [[0.8, 0.5], [0.5, 0.5]]).log()
        trainer._compute_loss(None, _inputs([[1, 1], [1, 1]] if rank == 0 else [[1, 0], [1, 1]],
                                            [False, False] if rank == 0 else [True, False]))
        dist.destroy_process_group()
        results.put((rank, list(trainer._metrics["train"]["luffy/expert_token_prob"])))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((rank, repr(exc)))


def test_expert_token_probability_pools_every_process_tokens(tmp_path):
    """The step log's luffy/expert_token_prob (mean π_θ on the demonstration tokens) is the generation batch's:
    every process's expert tokens. It was each process's own mean, and process 0's went into steps.jsonl (0.2
    here for the batch's 0.6); a micro-batch whose expert rows all sat on other processes logged nothing there."""
    outcome = together(_micro_batches, 2, tmp_path / "store")
    for rank in range(2):
        assert isinstance(outcome[rank], list), outcome[rank]
        assert len(outcome[rank]) == 2 and all(math.isclose(a, b, rel_tol=1e-5)
                                               for a, b in zip(outcome[rank], [0.6, 0.8])), (rank, outcome[rank])
