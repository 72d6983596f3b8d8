"""SFT + KD, ``sft_kd`` (the paper's ablation: distillation to the base model):
l = -log q(y*) + alpha * KL(p || q), KL = sum_v p(v) [log p(v) - log q(v)], p the frozen base's softmax.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from giftlab.lazy import torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

from .base import TokenBatch, check_range, register, upcast
from .sft import ce_grad_, forward_kl, gather_label, ref_logp


def _kd_vg(batch: TokenBatch, **hp):
    alpha = hp["alpha"]
    z = upcast(batch.logits)
    logq = torch.log_softmax(z, -1)
    logp = ref_logp(batch, z.dtype)
    loss = -gather_label(logq, batch.labels) + alpha * forward_kl(logp, logq)
    # (1+alpha) q - alpha p - e_y
    g = logq.exp_().mul_(1 + alpha).sub_(logp.exp_().mul_(alpha))
    return loss, ce_grad_(g, batch.labels)


def _kl_diag(batch: TokenBatch, **hp):
    z = upcast(batch.logits)
    return {"kl": forward_kl(ref_logp(batch, z.dtype), torch.log_softmax(z, -1))}


@register(
    "sft_kd",
    label="SFT + KD",
    defaults={"alpha": 0.1},
    needs_ref=True,
    validate=check_range("sft_kd", "alpha", lo=0.0),
    value_and_grad=_kd_vg,
    diag_fn=_kl_diag,
)
def sft_kd(batch: TokenBatch, **hp) -> Tensor:
    """SFT + forward-KL distillation to the frozen base: l = -log q(y*) + alpha * KL(pi_ref || pi_theta),
    KL = sum_v p_ref(v) [log p_ref(v) - log q(v)] (CE + alpha*KL, not (1-alpha)CE + alpha*KL). pi_ref is constant."""
    z = upcast(batch.logits)
    logq = torch.log_softmax(z, -1)
    return -gather_label(logq, batch.labels) + hp["alpha"] * forward_kl(ref_logp(batch, z.dtype), logq)
