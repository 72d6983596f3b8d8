"""SFT + Label Smoothing, ``sft_ls`` (the paper's ablation: soft labels):
l = -(1 - lambda) log q(y*) - (lambda / V) sum_v log q(v), 0 <= lambda <= 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from giftlab.lazy import LazyModule, torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

from .base import TokenBatch, check_range, register, upcast
from .sft import ce_grad_, gather_label

F = LazyModule("torch.nn.functional")


def _ls_vg(batch: TokenBatch, **hp):
    lam = hp["lambda"]
    z = upcast(batch.logits)
    v = z.shape[-1]
    logq = torch.log_softmax(z, -1)
    loss = -(1 - lam) * gather_label(logq, batch.labels) - (lam / v) * logq.sum(-1)
    g = logq.exp_().sub_(lam / v)
    return loss, ce_grad_(g, batch.labels, 1 - lam)


@register(
    "sft_ls",
    label="SFT + Label Smoothing",
    defaults={"lambda": 0.01},
    aliases={"lam": "lambda"},
    validate=check_range("sft_ls", "lambda", lo=0.0, hi=1.0),
    value_and_grad=_ls_vg,
)
def sft_ls(batch: TokenBatch, **hp) -> Tensor:
    """Label smoothing: l = -(1-lambda) log q(y*) - (lambda/V) sum_v log q(v)
    (= F.cross_entropy(label_smoothing=lambda); y* gets 1-lambda+lambda/V in total). 0 <= lambda <= 1."""
    return F.cross_entropy(upcast(batch.logits), batch.labels, label_smoothing=hp["lambda"], reduction="none")
