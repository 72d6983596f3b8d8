"""Proximal SFT (Zhu et al. 2025b): a PPO-clipped SFT with advantage 1 against a lagged snapshot pi_old."""

from __future__ import annotations

from typing import TYPE_CHECKING

from giftlab.lazy import torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

from .base import TokenBatch, all_of, check_range, register, upcast
from .sft import ce_grad_, gather_label

LOG_RATIO_CLAMP = 20.0


def _ratio_raw(batch: TokenBatch):
    """(log q [N,V], unclamped log r [N])."""
    z = upcast(batch.logits)
    logq = torch.log_softmax(z, -1)
    return logq, gather_label(logq, batch.labels) - batch.old_logprobs.detach().to(z.dtype)


def _ratio(batch: TokenBatch):
    logq, log_r = _ratio_raw(batch)
    return logq, torch.clamp(log_r, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)


def _psft_vg(batch: TokenBatch, **hp):
    lo, hi = hp["eps_low"], hp["eps_high"]
    logq, log_r_raw = _ratio_raw(batch)
    log_r = log_r_raw.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    r = log_r.exp()
    loss = -torch.minimum(r, r.clamp(1 - lo, 1 + hi))
    # d(-r)/dz = r (q - e_y) wherever the unclipped branch is active (r <= 1+eps_high; A = +1 so 1-eps_low never binds)
    # and the log-ratio clamp is inactive.
    active = (r <= 1 + hi) & (log_r_raw.abs() <= LOG_RATIO_CLAMP)
    w = torch.where(active, r, torch.zeros_like(r))
    g = logq.exp_().mul_(w[:, None])
    return loss, ce_grad_(g, batch.labels, w[:, None])


def _psft_diag(batch: TokenBatch, **hp):
    _, log_r = _ratio(batch)
    r = log_r.exp()
    return {"ratio": r, "clip_frac": (r > 1 + hp["eps_high"]).to(r.dtype)}


@register(
    "psft",
    label="PSFT",
    defaults={"eps_low": 0.2, "eps_high": 0.28, "snapshot_every": 8},
    needs_old=True,
    full_vocab=False,
    trainer_keys=("snapshot_every",),
    validate=all_of(
        check_range("psft", "eps_low", lo=0.0, hi=1.0),
        check_range("psft", "eps_high", lo=0.0),
        check_range("psft", "snapshot_every", lo=1),
    ),
    value_and_grad=_psft_vg,
    diag_fn=_psft_diag,
)
def psft(batch: TokenBatch, **hp) -> Tensor:
    """PSFT: l = -min(r, clip(r, 1-eps_low, 1+eps_high)), r = exp(clamp(log pi_theta(y*) - old_logprobs, -20, 20)).

    old_logprobs = log pi_old(y*) from a snapshot the trainer refreshes every ``snapshot_every`` optimiser steps
    (trainer-only hparam, default 8 = official recipe). At r = 1 the gradient equals SFT's. Only eps_high binds.
    """
    _, log_r = _ratio(batch)
    r = log_r.exp()
    return -torch.minimum(r, torch.clamp(r, 1 - hp["eps_low"], 1 + hp["eps_high"]))
