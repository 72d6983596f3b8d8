"""SFT + Entropy, ``sft_entropy`` (the paper's ablation: entropy regularisation):
l = -log q(y*) - lambda * H(q), H = -sum_v q(v) log q(v) over the full vocabulary, lambda >= 0 (an entropy bonus).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from giftlab.lazy import torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

from .base import TokenBatch, check_range, register, upcast
from .sft import ce_grad_, gather_label


def _entropy_parts(z: Tensor):
    logq = torch.log_softmax(z, -1)
    q = logq.exp()
    h = -(q * logq).sum(-1)
    return logq, q, h


def _ent_vg(batch: TokenBatch, **hp):
    lam = hp["lambda"]
    z = upcast(batch.logits)
    logq, q, h = _entropy_parts(z)
    loss = -gather_label(logq, batch.labels) - lam * h
    # d(-lam*H)/dz = lam * q * (log q + H)
    g = logq.add_(h[:, None]).mul_(q).mul_(lam).add_(q)
    return loss, ce_grad_(g, batch.labels)


def _ent_diag(batch: TokenBatch, **hp):
    return {"entropy": _entropy_parts(upcast(batch.logits))[2]}


@register(
    "sft_entropy",
    label="SFT + Entropy",
    defaults={"lambda": 0.01},
    aliases={"lam": "lambda"},
    validate=check_range("sft_entropy", "lambda", lo=0.0),
    value_and_grad=_ent_vg,
    diag_fn=_ent_diag,
)
def sft_entropy(batch: TokenBatch, **hp) -> Tensor:
    """SFT with an entropy BONUS: l = -log pi_theta(y*) - lambda * H(pi_theta), H = -sum_v pi log pi (full vocab).

    Gradient flows through H (no stop-gradient); minimising the loss raises the entropy. lambda >= 0.
    """
    logq, _, h = _entropy_parts(upcast(batch.logits))
    return -gather_label(logq, batch.labels) - hp["lambda"] * h
