"""The chunked head's plain-torch backend: per chunk, logits, loss and its logit gradient, then the contraction."""

from __future__ import annotations

import torch
from torch import Tensor

from ..base import Objective, TokenBatch
from .common import contract_chunk, grad_buffers, outside_autocast


def torch_chunked_forward(
    obj: Objective,
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    ref_hidden: Tensor | None,
    ref_weight: Tensor | None,
    ref_logits: Tensor | None,
    old_logprobs: Tensor | None,
    chunk_size: int,
    need_dx: bool,
    need_dw: bool,
    closed_form: bool,
    accum_dtype: torch.dtype,
    diag_sums: dict | None,
):
    n = hidden.shape[0]
    per_token, dx, dw = grad_buffers(hidden, weight, need_dx, need_dw, accum_dtype)
    need_grad = need_dx or need_dw
    for s in range(0, n, chunk_size):
        e = min(n, s + chunk_size)
        x = hidden[s:e]
        z = x @ weight.T  # under autocast (sft.bf16) in its dtype, as the model's own lm_head
        with outside_autocast(x):  # the reference logits and the objective as the plain head has them: fp32
            if ref_logits is not None:
                rz = ref_logits[s:e]
            elif ref_hidden is not None:
                rz = ref_hidden[s:e] @ ref_weight.T
            else:
                rz = None
            batch = TokenBatch(z, labels[s:e], rz, None if old_logprobs is None else old_logprobs[s:e])
            if diag_sums is not None:
                for k, v in obj.diag_terms(batch).items():
                    diag_sums[k] = diag_sums.get(k, 0.0) + v.sum()
            if not need_grad:
                per_token[s:e] = obj(batch).detach()
                continue
            if closed_form and obj.has_value_and_grad:
                lt, g = obj.value_and_grad(batch)
            else:
                lt, g = _autograd_vg(obj, batch)
        per_token[s:e] = lt
        del batch, lt
        g = g.to(z.dtype)  # as autograd would cast d loss / d logits back to the logits' dtype
        del z, rz
        contract_chunk(g, x, weight, dx[s:e] if need_dx else None, dw)
        del g
    return per_token.sum(), per_token, dx, dw


def _autograd_vg(obj: Objective, batch: TokenBatch):
    """Per-chunk autograd (used when the objective has no closed-form gradient, or closed_form=False)."""
    z = batch.logits.detach().requires_grad_(True)
    with torch.enable_grad():
        lt = obj(TokenBatch(z, batch.labels, batch.ref_logits, batch.old_logprobs))
        (g,) = torch.autograd.grad(lt.sum(), z)
    return lt.detach(), g
