"""Dynamic Fine-Tuning, ``dft`` (Wu et al. 2025): l = -sg(q(y*)) log q(y*), the label's loss weighted by the
student's own (detached) probability of it. Notation: objectives/sft.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from giftlab.lazy import torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

from .base import TokenBatch, register, upcast
from .sft import ce_grad_, gather_label


def dft_terms(z: Tensor, labels: Tensor):
    logq = torch.log_softmax(z, -1)
    logq_y = gather_label(logq, labels)
    return logq, logq_y


def _dft_vg(batch: TokenBatch):
    z = upcast(batch.logits)
    logq, logq_y = dft_terms(z, batch.labels)
    w = logq_y.exp()
    g = logq.exp_().mul_(w[:, None])  # w * (q - e_y)
    return -w * logq_y, ce_grad_(g, batch.labels, w[:, None])


@register("dft", label="DFT", full_vocab=False, value_and_grad=_dft_vg)
def dft(batch: TokenBatch) -> Tensor:
    """DFT: l = -sg(pi_theta(y*)) * log pi_theta(y*); the weight is the current student's probability, detached
    (gradient = -grad pi_theta(y*))."""
    _, logq_y = dft_terms(upcast(batch.logits), batch.labels)
    return -logq_y.detach().exp() * logq_y
