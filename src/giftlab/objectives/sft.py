"""Plain SFT, ``sft``: l = -log pi_theta(y*); and the per-token pieces the other objectives build on (the label's
entry, the cross-entropy gradient in place, the frozen reference's log-probs and the forward KL to them).

Notation (every objective module): z = student logits, log q = log_softmax(z), y = y* (label),
p = softmax(ref_logits), V = vocab size. All per-token; the trainer takes the token mean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from giftlab.lazy import LazyModule, torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

from .base import TokenBatch, register, upcast

F = LazyModule("torch.nn.functional")


def gather_label(x: Tensor, labels: Tensor) -> Tensor:
    return x.gather(-1, labels[:, None]).squeeze(-1)


def ce_grad_(q: Tensor, labels: Tensor, scale: float | Tensor = 1.0) -> Tensor:
    """In place: q -> q - scale * e_y (the gradient of scale * -log q(y) is scale * (q - e_y) when q sums to 1)."""
    q.scatter_add_(-1, labels[:, None], -torch.as_tensor(scale, dtype=q.dtype, device=q.device).expand(q.shape[0], 1))
    return q


def _sft_vg(batch: TokenBatch):
    z = upcast(batch.logits)
    lse = torch.logsumexp(z, -1)
    loss = lse - gather_label(z, batch.labels)
    g = torch.softmax(z, -1)
    return loss, ce_grad_(g, batch.labels)


@register("sft", label="SFT", full_vocab=False, value_and_grad=_sft_vg)
def sft(batch: TokenBatch) -> Tensor:
    """Plain SFT: l = -log pi_theta(y*)."""
    return F.cross_entropy(upcast(batch.logits), batch.labels, reduction="none")


def forward_kl(logp_ref: Tensor, logq: Tensor) -> Tensor:
    """KL(p_ref || q) = sum_v p_ref (log p_ref - log q), per row. Gradient only through log q."""
    return (logp_ref.exp() * (logp_ref - logq)).sum(-1)


def ref_logp(batch: TokenBatch, dtype: torch.dtype) -> Tensor:
    return torch.log_softmax(batch.ref_logits.detach().to(dtype), -1)
