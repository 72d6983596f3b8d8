"""ReLIFT's pieces against straightforward references: which questions enter the buffer, when an SFT step fires
and what is left (the released trainer's concat/slice, replayed), and the SFT loss with its gradient (float64)."""

import math
import random

import pytest
import torch

from giftlab.cli import ConfigError
from giftlab.rl_methods import RL_METHODS
from giftlab.rl_methods.relift import HardQuestionBuffer, entropy_from_logits, hardest_questions, sft_loss


def test_registered_with_the_released_defaults():
    relift = RL_METHODS["relift"]
    params = relift.check({})
    assert relift.label == "ReLIFT" and relift.needs_demonstrations
    assert params["sft_batch"] == 128 and params["sft_micro_batch"] == 4 and params["sft_lr_ratio"] == 1.0
    overrides = relift.grpo_overrides(params)
    assert overrides["epsilon"] == math.inf and overrides["delta"] is None and overrides["max_grad_norm"] == 0.7
    assert overrides["scale_rewards"] == "none" and overrides["loss_type"] == "dr_grpo"
    with pytest.raises(ConfigError, match="unified.relift.sft_bach: unknown key"):
        relift.check({"sft_bach": 4})
    with pytest.raises(ConfigError, match="unified.relift.sft_batch: expected an integer"):
        relift.check({"sft_batch": 2.5})
    with pytest.raises(ConfigError, match="unified.relift.sft_lr_ratio: must be > 0"):
        relift.check({"sft_lr_ratio": 0})


def test_only_questions_whose_samples_all_fail_are_hardest():
    rewards = torch.tensor([0., 0., 0.,   0., 1., 0.,   1., 1., 1.,   0., 0., 0.])
    assert hardest_questions([10, 11, 12, 13], rewards, 3) == [10, 13]
    with pytest.raises(ValueError, match="3 questions for 4 groups"):
        hardest_questions([1, 2, 3], rewards, 3)


def _released_buffer(batches, size):
    """The released trainer's bookkeeping (trainer.py L445-528), with lists for DataProto: new failures are
    concatenated in front of the buffer; after the update, a full buffer gives its first `size` items to SFT."""
    buffer, fired = None, []
    for new in batches:
        if new:
            buffer = new + buffer if buffer is not None else list(new)
        if buffer is not None and len(buffer) >= size:
            fired.append(buffer[:size])
            buffer = None if len(buffer) == size else buffer[size:]
    return fired, buffer or []


def test_buffer_fires_and_keeps_leftovers_as_the_released_trainer_does():
    rng = random.Random(0)
    batches = [[rng.randrange(1000) for _ in range(rng.choice([0, 0, 1, 3, 5]))] for _ in range(60)]
    for size in (1, 4, 7):
        buffer, fired = HardQuestionBuffer(size), []
        for new in batches:
            buffer.add(new)
            batch = buffer.pop_batch()
            if batch is not None:
                fired.append(batch)
        expected_fired, expected_left = _released_buffer(batches, size)
        assert fired == expected_fired and buffer.items == expected_left
        assert all(len(b) == size for b in fired)


def test_sft_loss_is_token_mean_nll_minus_entropy_with_its_gradient():
    torch.manual_seed(0)
    B, T, V, coef = 2, 4, 6, 0.001
    logits = torch.randn(B, T, V, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, V, (B, T))
    labels[0, :2] = -100  # prompt
    labels[1, 3] = -100   # padding
    loss, nll, ent = sft_loss(logits, labels, coef)

    tokens = [(b, t) for b in range(B) for t in range(T) if labels[b, t] != -100]
    z = logits.detach()
    ref_nll = sum(-torch.log_softmax(z[b, t], -1)[labels[b, t]].item() for b, t in tokens) / len(tokens)
    ref_ent = 0.0
    for b, t in tokens:
        p = torch.softmax(z[b, t], -1)
        ref_ent += -(p * p.log()).sum().item()
    ref_ent /= len(tokens)
    assert nll.item() == pytest.approx(ref_nll, rel=1e-9) and ent.item() == pytest.approx(ref_ent, rel=1e-9)
    assert loss.item() == pytest.approx(ref_nll - coef * ref_ent, rel=1e-9)

    loss.backward()
    # d/dz of NLL: p − onehot(y); of H: −p ⊙ (log p + H); each over the token count
    expected = torch.zeros_like(z)
    for b, t in tokens:
        p = torch.softmax(z[b, t], -1)
        h = -(p * p.log()).sum()
        onehot = torch.zeros(V, dtype=torch.float64)
        onehot[labels[b, t]] = 1
        expected[b, t] = ((p - onehot) - coef * (-p * (p.log() + h))) / len(tokens)
    torch.testing.assert_close(logits.grad, expected, rtol=1e-6, atol=1e-12)


def test_entropy_from_logits_is_the_softmax_entropy():
    z = torch.tensor([[0.0, 0.0], [10.0, -10.0]], dtype=torch.float64)
    assert entropy_from_logits(z).tolist() == pytest.approx([math.log(2), 0.0], abs=1e-7)
