"""LUFFY: the mixed-group advantage, the shaped off-policy loss and its gradient against straightforward references
(float64), and, through TRL's GRPOTrainer, that the expert trace really is a member of each group and of the loss."""

import math

import pytest
import torch

from giftlab.rl_methods import RL_METHODS
from giftlab.rl_methods.luffy import aggregate, expert_rows, group_advantages, token_losses

GAMMA = 0.1


def test_registered_with_the_released_defaults():
    luffy = RL_METHODS["luffy"]
    assert luffy.label == "LUFFY" and luffy.needs_demonstrations
    assert luffy.check({}) == {"expert_samples": 1, "shaping_gamma": 0.1, "entropy_coef": 0.001,
                               "released_gpus": 8, "released_micro_batch_tokens": 32768}
    assert luffy.grpo_overrides(luffy.check({}))["scale_rewards"] == "none"


def test_group_advantage_is_reward_minus_the_mean_of_the_whole_mixed_group():
    rewards = torch.tensor([1., 0., 0., 1.,   0., 0., 0., 1.,   1., 1., 1., 1.], dtype=torch.float64)
    G = 4
    expected = []
    for g in range(3):
        group = rewards[g * G:(g + 1) * G].tolist()
        mean = sum(group) / G  # the expert sample (last of the group) counts in the mean
        expected += [r - mean for r in group]
    assert group_advantages(rewards, G).tolist() == pytest.approx(expected, abs=1e-12)


def test_expert_rows_are_the_last_of_every_group_across_processes():
    assert expert_rows(8, 0, 4, 1) == [False, False, False, True] * 2
    assert expert_rows(8, 0, 4, 2) == [False, False, True, True] * 2
    # G = 8 split over 2 processes of 4 rows: only process 1 holds the group's last sample
    assert expert_rows(4, 0, 8, 1) == [False] * 4
    assert expert_rows(4, 1, 8, 1) == [False, False, False, True]


def _reference_losses(logps, old, adv, is_expert, gamma):
    B, T = logps.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            if is_expert[b]:
                p = math.exp(logps[b, t].item())
                out[b, t] = -adv[b] * p / (p + gamma)
            else:
                out[b, t] = -adv[b] * math.exp(logps[b, t].item() - old[b, t].item())
    return out


def test_token_losses_and_their_logit_gradients_match_the_formulas():
    torch.manual_seed(0)
    B, T, V, L = 4, 5, 7, 6
    logits = torch.randn(B, T, V, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, V, (B, T))
    old = torch.log_softmax(torch.randn(B, T, V, dtype=torch.float64), -1).gather(-1, labels[..., None])[..., 0]
    adv = torch.tensor([0.75, -0.25, -0.25, -0.25], dtype=torch.float64)
    is_expert = torch.tensor([False, False, True, True])
    mask = torch.ones(B, T, dtype=torch.float64)
    mask[1, 3:] = 0  # a short rollout
    mask[3, 4:] = 0  # a short expert trace
    logps = torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0]

    losses = token_losses(logps, old, adv, is_expert, GAMMA)
    ref = _reference_losses(logps.detach(), old, adv, is_expert, GAMMA)
    torch.testing.assert_close(losses.detach(), ref, rtol=1e-6, atol=1e-12)

    entropies = torch.zeros(B, T, dtype=torch.float64)  # the entropy term is checked on its own below
    loss, policy, _ = aggregate(losses, mask, entropies, L, entropy_coef=0.0)
    assert loss.item() == pytest.approx((ref * mask).sum().item() / (B * L), rel=1e-9)
    loss.backward()

    # d loss / d z_v = c · (1[v = y] − softmax(z)_v), c = d loss / d log p(y):
    #   rollouts: −A·r / (B·L);   expert tokens: −A·γ·p / (p + γ)² / (B·L)   (f'(p)·p, no ratio to π_old)
    probs = torch.softmax(logits.detach(), -1)
    expected = torch.zeros_like(probs)
    for b in range(B):
        for t in range(T):
            if not mask[b, t]:
                continue
            lp = logps[b, t].item()
            if is_expert[b]:
                p = math.exp(lp)
                c = -adv[b].item() * GAMMA * p / (p + GAMMA) ** 2
            else:
                c = -adv[b].item() * math.exp(lp - old[b, t].item())
            onehot = torch.zeros(V, dtype=torch.float64)
            onehot[labels[b, t]] = 1
            expected[b, t] = c / (B * L) * (onehot - probs[b, t])
    torch.testing.assert_close(logits.grad, expected, rtol=1e-6, atol=1e-12)
    assert logits.grad[1, 3:].abs().max() == 0 and logits.grad[3, 4:].abs().max() == 0  # masked tokens: nothing


def test_entropy_bonus_is_a_token_mean_subtracted():
    losses = torch.zeros(2, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.float64)
    entropies = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]], dtype=torch.float64)
    loss, policy, entropy = aggregate(losses, mask, entropies, max_length=3, entropy_coef=0.001)
    assert entropy.item() == pytest.approx(2.0) and policy.item() == 0
    assert loss.item() == pytest.approx(-0.002)


def test_entropy_coefficient_weighs_the_bonus_as_the_released_update_does():
    """verl (use_dynamic_bsz, gradient_accumulation 1): each GPU sums Σ_mb ℓ / L − c · token-mean_mb H over its
    micro-batches of at most `micro_batch_tokens` (prompt + response) tokens; the GPUs are averaged. Here 8 sequences
    of 3 prompt + 5 response tokens on 2 GPUs, 2 micro-batches of 2 sequences each: with the released coefficient,
    our Σ ℓ / (N·L) − c' · token-mean H is that objective × G / N (the value and so every gradient); with c itself the
    bonus weighs N / (G·m) = 2 times more."""
    from giftlab.rl_methods.base import released_entropy_coef

    torch.manual_seed(0)
    N, G, P, R, L, c = 8, 2, 3, 5, 7, 0.01
    losses, entropies = torch.randn(N, R, dtype=torch.float64), torch.rand(N, R, dtype=torch.float64) * 3
    released = 0.0
    for gpu in range(G):
        rows = list(range(gpu * N // G, (gpu + 1) * N // G))
        for mb in (rows[:2], rows[2:]):  # 2 sequences × 8 tokens = 16 = micro_batch_tokens
            released += (losses[mb].sum() / L - c * entropies[mb].mean()) / G
    coef = released_entropy_coef(c, update_tokens=N * (P + R), update_sequences=N, gpus=G, micro_batch_tokens=16)
    assert coef == pytest.approx(c * 2 * G / N)
    mask = torch.ones(N, R, dtype=torch.float64)
    ours, _, _ = aggregate(losses, mask, entropies, max_length=L, entropy_coef=coef)
    assert (ours * N / G).item() == pytest.approx(released.item(), rel=1e-12)
    plain, _, _ = aggregate(losses, mask, entropies, max_length=L, entropy_coef=c)
    assert (plain * N / G).item() != pytest.approx(released.item(), rel=1e-6)
    # one micro-batch per GPU however few tokens; 0 tokens per micro-batch: not used (training_entropy_coef)
    assert released_entropy_coef(c, 10, N, G, 32768) == pytest.approx(c * G / N)
