"""Memory-efficient loss head: hidden states + lm_head weight -> loss, chunked over tokens.

The full [N, V] logits are never materialised. A custom ``torch.autograd.Function`` walks the N tokens in chunks of
``chunk_size``; per chunk it forms the logits ``z = X_c W^T``, the per-token loss and ``dz = d loss / d z`` (the
objective's closed form, or autograd on the chunk), and immediately contracts ``dX_c = dz W`` and
``dW += dz^T X_c``. Only dX [N, H] and dW [V, H] are kept for the backward, so the extra peak memory is
O(chunk x V) instead of O(N x V). The reference model's logits, when the objective needs them, are formed per chunk
the same way from ``ref_hidden`` and ``ref_weight`` (no grad).

Exact against the plain path ``obj(TokenBatch(hidden @ weight.T, ...)).sum()`` (tests: float64, values and
gradients of hidden and weight, chunk sizes that do not divide N). Under autocast (``sft.bf16``) both compute as
the trainer's plain head does: the projection and the gradient contractions in autocast's dtype, the reference
logits and the objective outside it, in fp32 (tests: bf16 CPU autocast over fp32 leaves: loss and dX equal to fp32
rounding, dW, whose chunks' bf16 products are summed in fp32, within bf16 rounding).

Backends: ``BACKENDS["torch"]`` is the plain-torch loop (:mod:`.torch_loop`); ``BACKENDS["triton"]`` replaces the
per-chunk elementwise work with one fused Triton kernel (:mod:`.triton`; SFT and exact GIFT only). Another backend is
a function with the same signature as :func:`.torch_loop.torch_chunked_forward` (returns loss_sum, per_token, dX, dW).

Entry points:
    chunked_loss(obj, hidden, weight, labels, ...) -> (loss_sum, n)       always chunked
    loss_head(obj, hidden, weight, labels, ...)     -> (loss_sum, n)       chunked when it helps, else plain
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..base import Objective, TokenBatch
from .common import default_chunk_size, head_chunk_size, outside_autocast
from .torch_loop import torch_chunked_forward

__all__ = ["chunked_loss", "loss_head", "plain_loss", "default_chunk_size", "BACKENDS"]

def _triton_chunked_forward(*args):
    from .triton import triton_chunked_forward  # imports triton only when asked for

    return triton_chunked_forward(*args)


BACKENDS: dict[str, Callable] = {"torch": torch_chunked_forward, "triton": _triton_chunked_forward}


class _ChunkedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, cfg):
        need_dx = cfg["grad_enabled"] and hidden.requires_grad
        need_dw = cfg["grad_enabled"] and weight.requires_grad
        loss_sum, per_token, dx, dw = BACKENDS[cfg["backend"]](
            cfg["obj"], hidden.detach(), weight.detach(), cfg["labels"], cfg["ref_hidden"], cfg["ref_weight"],
            cfg["ref_logits"], cfg["old_logprobs"], cfg["chunk_size"], need_dx, need_dw, cfg["closed_form"],
            cfg["accum_dtype"], cfg["diag_sums"],
        )
        cfg["per_token"] = per_token
        ctx.weight_dtype = weight.dtype
        ctx.save_for_backward(dx, dw)
        return loss_sum

    @staticmethod
    def backward(ctx, grad):
        if getattr(ctx, "used", False):
            raise RuntimeError("chunked_loss: the loss supports a single backward (gradients are scaled in place)")
        ctx.used = True
        dx, dw = ctx.saved_tensors
        gx = gw = None
        # in place: the stored gradients are used by this one backward only (no extra V x H temporary)
        if dx is not None and ctx.needs_input_grad[0]:
            gx = dx.mul_(grad.to(dx.dtype))
        if dw is not None and ctx.needs_input_grad[1]:
            gw = dw.mul_(grad.to(dw.dtype)).to(ctx.weight_dtype)
        return gx, gw, None


def chunked_loss(
    obj: Objective,
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    ref_hidden: Tensor | None = None,
    ref_weight: Tensor | None = None,
    old_logprobs: Tensor | None = None,
    chunk_size: int | None = None,
    *,
    ref_logits: Tensor | None = None,
    closed_form: bool = True,
    accum_dtype: torch.dtype | None = torch.float32,
    backend: str = "torch",
    stats: dict | None = None,
    diagnose: bool = False,
) -> tuple[Tensor, int]:
    """Sum over the N tokens of ``obj``'s per-token loss, from hidden states, without materialising [N, V] logits.

    hidden [N, H] (rows at the masked response positions, already shifted), weight [V, H] (lm_head),
    labels [N]. For objectives with ``needs_ref``: ``ref_hidden`` [N, H] + ``ref_weight`` [V, H] of the frozen
    reference (or precomputed ``ref_logits`` [N, V]). For ``needs_old``: ``old_logprobs`` [N].
    Returns ``(loss_sum, n)``; ``loss_sum`` is a differentiable scalar (grads w.r.t. hidden and weight, which are
    computed during the forward). Divide by the trainer's num_items like the plain path.

    chunk_size: tokens per chunk (None: :func:`default_chunk_size`). closed_form: use the objective's analytic
    logit-gradient if it has one (else autograd per chunk). accum_dtype: dtype of the dW accumulator (None: the
    weight's dtype; never below it; fp32 default is more accurate for bf16 weights but costs V x H x 4 bytes). stats: if a dict is given it gets
    ``per_token`` (detached [N]) and, with ``diagnose=True``, ``diag_sums`` (sums of the per-token diagnostics).
    The returned tensor supports one backward (the stored gradients are not recomputed).
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"chunked_loss: expected hidden [N,H] and weight [V,H], got {tuple(hidden.shape)}, "
                         f"{tuple(weight.shape)}")
    if labels.shape != hidden.shape[:1]:
        raise ValueError("chunked_loss: labels must be [N] like hidden's first dim")
    if obj.needs_ref and ref_logits is None and (ref_hidden is None or ref_weight is None):
        raise ValueError(f"objective {obj.name!r} needs ref_hidden and ref_weight (or ref_logits)")
    if obj.needs_old and old_logprobs is None:
        raise ValueError(f"objective {obj.name!r} needs old_logprobs (PSFT snapshot)")
    if backend not in BACKENDS:
        raise ValueError(f"chunked_loss: unknown backend {backend!r}; known: {sorted(BACKENDS)}")
    n, v = hidden.shape[0], weight.shape[0]
    if chunk_size is None:
        chunk_size = default_chunk_size(n, v)
    if chunk_size < 1:
        raise ValueError(f"chunked_loss: chunk_size must be >= 1, got {chunk_size}")
    with torch.no_grad():
        rh = None if ref_hidden is None else ref_hidden.detach()
        rw = None if ref_weight is None else ref_weight.detach()
    cfg = dict(
        obj=obj, labels=labels, ref_hidden=rh if obj.needs_ref else None, ref_weight=rw,
        ref_logits=(ref_logits.detach() if ref_logits is not None and obj.needs_ref else None),
        old_logprobs=None if old_logprobs is None else old_logprobs.detach(), chunk_size=int(chunk_size),
        closed_form=closed_form, accum_dtype=torch.promote_types(accum_dtype or weight.dtype, weight.dtype),
        backend=backend,
        grad_enabled=torch.is_grad_enabled(), diag_sums={} if diagnose else None,
    )
    loss_sum = _ChunkedLoss.apply(hidden, weight, cfg)
    if stats is not None:
        stats["per_token"] = cfg["per_token"]
        if diagnose:
            # like objectives.diagnostic_sums: the token count the sums are divided by
            stats["diag_sums"] = {**cfg["diag_sums"], "n": torch.tensor(float(n))}
    return loss_sum, n


def plain_loss(
    obj: Objective,
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    ref_hidden: Tensor | None = None,
    ref_weight: Tensor | None = None,
    old_logprobs: Tensor | None = None,
    *,
    ref_logits: Tensor | None = None,
) -> tuple[Tensor, int]:
    """Reference path: materialise the logits and call the objective. Returns (loss_sum, n).

    Under autocast as the trainer's plain head: the logits in autocast's dtype (the model's lm_head), the reference
    logits and the objective outside autocast (the trainer computes them outside the policy's forward).
    """
    logits = hidden @ weight.T
    with outside_autocast(hidden):
        if obj.needs_ref and ref_logits is None:
            with torch.no_grad():
                ref_logits = ref_hidden @ ref_weight.T
        per_token = obj(TokenBatch(logits, labels, ref_logits if obj.needs_ref else None, old_logprobs))
    return per_token.sum(), hidden.shape[0]


def loss_head(
    obj: Objective,
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    ref_hidden: Tensor | None = None,
    ref_weight: Tensor | None = None,
    old_logprobs: Tensor | None = None,
    chunk_size: int | str | None = "auto",
    **kwargs,
) -> tuple[Tensor, int]:
    """Default loss head: chunked when it helps, plain otherwise.

    chunk_size="auto": chunked iff the N x V fp32 logits would exceed one chunk budget (1 GiB), i.e. whenever
    chunking actually bounds memory; an int forces chunking with that size; None or 0 forces the plain path.
    """
    if chunk_size == "auto":
        chunk_size = head_chunk_size("auto", hidden.shape[0], weight.shape[0])
    if not chunk_size:
        kw = {"ref_logits": kwargs["ref_logits"]} if kwargs.get("ref_logits") is not None else {}
        return plain_loss(obj, hidden, weight, labels, ref_hidden, ref_weight, old_logprobs, **kw)
    return chunked_loss(obj, hidden, weight, labels, ref_hidden, ref_weight, old_logprobs, int(chunk_size), **kwargs)
