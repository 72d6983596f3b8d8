"""Anchored SFT, ``asft`` (Zhu et al. 2025a): DFT's loss anchored to the frozen base,
l = -sg(q(y*)) log q(y*) + lambda * KL, forward KL(p || q) (the released code, default) or reverse KL(q || p)
(the ASFT paper's Eq. 6). Notation: objectives/sft.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from giftlab.lazy import torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

from .base import TokenBatch, all_of, check_choice, check_range, register, upcast
from .dft import dft_terms
from .sft import ce_grad_, forward_kl, ref_logp


def reverse_kl(logq: Tensor, logp_ref: Tensor) -> Tensor:
    """KL(q || p_ref) = sum_v q (log q - log p_ref), gradient through both q factors."""
    return (logq.exp() * (logq - logp_ref)).sum(-1)


def _asft_vg(batch: TokenBatch, **hp):
    lam, direction = hp["lambda"], hp["kl_direction"]
    z = upcast(batch.logits)
    logq, logq_y = dft_terms(z, batch.labels)
    logp = ref_logp(batch, z.dtype)
    w = logq_y.exp()
    if direction == "forward":
        kl = forward_kl(logp, logq)
        # w (q - e_y) + lam (q - p)
        g = logq.exp_().mul_(w[:, None] + lam).sub_(logp.exp_().mul_(lam))
    else:
        d = logq - logp  # log q - log p
        q = logq.exp_()
        kl = (q * d).sum(-1)
        # d KL(q||p)/dz = q * (d - KL); total: w (q - e_y) + lam q (d - KL)
        g = d.sub_(kl[:, None]).mul_(q).mul_(lam).add_(q.mul_(w[:, None]))
    return -w * logq_y + lam * kl, ce_grad_(g, batch.labels, w[:, None])


def _asft_diag(batch: TokenBatch, **hp):
    z = upcast(batch.logits)
    logq, logp = torch.log_softmax(z, -1), ref_logp(batch, z.dtype)
    kl = forward_kl(logp, logq) if hp["kl_direction"] == "forward" else reverse_kl(logq, logp)
    return {"kl": kl}


def _asft_cached_ref(hp) -> None:
    if hp["kl_direction"] == "reverse":
        raise ValueError("kl_direction: reverse weighs log p_ref of every token by the policy, and the cached "
                         "reference only bounds r's error in total variation (its tail tokens' log-probs are a "
                         "uniform guess): use sft.reference: exact, or kl_direction: forward")


@register(
    "asft",
    label="ASFT",
    defaults={"lambda": 0.05, "kl_direction": "forward"},
    aliases={"lam": "lambda"},
    needs_ref=True,
    validate=all_of(check_range("asft", "lambda", lo=0.0), check_choice("asft", "kl_direction", ("forward", "reverse"))),
    value_and_grad=_asft_vg,
    diag_fn=_asft_diag,
    validate_cached_ref=_asft_cached_ref,
)
def asft(batch: TokenBatch, **hp) -> Tensor:
    """Anchored SFT: l = -sg(pi_theta(y*)) log pi_theta(y*) + lambda * KL.

    kl_direction="forward" (released code, default): KL(pi_ref || pi_theta) = sum p_ref (log p_ref - log q).
    kl_direction="reverse" (ASFT paper, Eq. 6): KL(pi_theta || pi_ref) = sum q (log q - log p_ref), gradient through both q.
    lambda = 0.05 (ASFT paper main experiments; the code's default is 0.1).
    """
    lam = hp["lambda"]
    z = upcast(batch.logits)
    logq, logq_y = dft_terms(z, batch.labels)
    logp = ref_logp(batch, z.dtype)
    kl = forward_kl(logp, logq) if hp["kl_direction"] == "forward" else reverse_kl(logq, logp)
    return -logq_y.detach().exp() * logq_y + lam * kl
