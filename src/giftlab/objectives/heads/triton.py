"""Fused Triton kernel for the chunked loss head: GIFT (and plain SFT) loss and logit-gradient in one pass.

Per token row (z = x W^T the policy logits, r = x_ref W_ref^T the base logits, y the label):

    lse_z = logsumexp(z),  lse_r = logsumexp(r),  log r_y = r_y - lse_r
    b     = sigmoid(log(e^beta - 1) + log r_y)                  (GIFT's mix weight; b = 1 is plain SFT)
    loss  = lse_z - b z_y - (1 - b) sum_v softmax(r)_v z_v      (= -sum_v pi*_v log q_v, pi* = (1-b) r + b e_y)
    dz    = softmax(z) - (1 - b) softmax(r) - b e_y

The kernel reads each row of z and r twice (an online max/sum pass, then the gradient pass) and writes dz over z
in place, in z's dtype. Nothing [chunk, V]-sized is allocated besides the two logit buffers, and the elementwise
work that the plain-torch chunk does in ~10 fp32 passes (upcasts, two log-softmaxes, exp, row dot, gradient) is one
fused kernel, as in Liger's fused linear cross-entropy (whose kernel is the b = 1 case without a reference).

Supported: ``sft`` and ``gift`` with ``variant="exact"`` and ``smooth_lambda=0`` (the paper's formula); other
objectives use the torch backend. ``TRITON_INTERPRET=1`` runs the same kernel on CPU tensors (tests).
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from ..gift import target_mass_terms
from .common import contract_chunk, grad_buffers, outside_autocast

__all__ = ["SUPPORTED", "supports", "check_supported", "check_runnable", "triton_chunked_forward", "gift_rows_"]

SUPPORTED = "sft, and gift with variant='exact' and smooth_lambda=0"
MAX_BLOCK = 8192


def supports(obj) -> bool:
    """Whether the kernel computes objective ``obj`` (see ``SUPPORTED``)."""
    hp = obj.hparams
    return obj.name == "sft" or (obj.name == "gift" and hp.get("variant") == "exact" and not hp.get("smooth_lambda"))


def check_supported(obj) -> None:
    """Raise a one-line ValueError unless ``obj`` is one the kernel computes."""
    if not supports(obj):
        raise ValueError(f"loss backend 'triton' supports {SUPPORTED}; got {obj!r} (use backend 'torch')")


def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def gift_rows_kernel(z_ptr, z_stride, r_ptr, r_stride, y_ptr, loss_ptr, stat_ptr, V, log_em1,
                         MODE: tl.constexpr, BLOCK: tl.constexpr):
        # MODE 0: finite beta > 0 (b from the base), 1: plain SFT (b = 1, r unused), 2: beta = 0 (b = 0),
        # 3: beta = inf (b = 1, the base's stats still reported)
        row = tl.program_id(0).to(tl.int64)
        z_row = z_ptr + row * z_stride
        r_row = r_ptr + row * r_stride
        y = tl.load(y_ptr + row)
        m_z = -float("inf")
        s_z = 0.0
        m_r = -float("inf")
        s_r = 0.0
        d = 0.0  # sum_v exp(r_v - m_r) z_v, rescaled with m_r
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < V
            z = tl.load(z_row + offs, mask=mask, other=-float("inf")).to(tl.float32)
            new_m = tl.maximum(m_z, tl.max(z, 0))
            # a row whose logits so far are all -inf keeps m = -inf: exp(-inf - -inf) would be NaN
            safe = tl.where(new_m == -float("inf"), 0.0, new_m)
            s_z = s_z * tl.exp(m_z - safe) + tl.sum(tl.exp(z - safe), 0)
            m_z = new_m
            if MODE != 1:
                r = tl.load(r_row + offs, mask=mask, other=-float("inf")).to(tl.float32)
                new_r = tl.maximum(m_r, tl.max(r, 0))
                safe_r = tl.where(new_r == -float("inf"), 0.0, new_r)
                scale = tl.exp(m_r - safe_r)
                e = tl.exp(r - safe_r)
                s_r = s_r * scale + tl.sum(e, 0)
                d = d * scale + tl.sum(e * tl.where(mask, z, 0.0), 0)
                m_r = new_r
        lse_z = m_z + tl.log(s_z)
        z_y = tl.load(z_row + y).to(tl.float32)
        if MODE == 1:
            b = 1.0
            lse_r = 0.0
            r_y = 1.0
            loss = lse_z - z_y
        else:
            lse_r = m_r + tl.log(s_r)
            logr_y = tl.load(r_row + y).to(tl.float32) - lse_r
            r_y = tl.exp(logr_y)
            if MODE == 0:
                b = tl.sigmoid(log_em1 + logr_y)
            elif MODE == 3:
                b = 1.0
            else:
                b = 0.0
            loss = lse_z - b * z_y - (1.0 - b) * (d / s_r)
        tl.store(loss_ptr + row, loss)
        tl.store(stat_ptr + 3 * row, (1.0 - b) * r_y + b)  # target mass on y*
        tl.store(stat_ptr + 3 * row + 1, r_y)              # base probability of y*
        tl.store(stat_ptr + 3 * row + 2, lse_z - z_y)      # nll = -log q(y*)
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < V
            z = tl.load(z_row + offs, mask=mask, other=0.0).to(tl.float32)
            g = tl.exp(z - lse_z) - b * (offs == y).to(tl.float32)
            if MODE != 1:
                r = tl.load(r_row + offs, mask=mask, other=0.0).to(tl.float32)
                g -= (1.0 - b) * tl.exp(r - lse_r)
            tl.store(z_row + offs, g.to(z_ptr.dtype.element_ty), mask=mask)

    return gift_rows_kernel


_KERNEL = None


def gift_rows_(z: Tensor, r: Tensor | None, labels: Tensor, beta: float, block: int | None = None,
               num_warps: int | None = None) -> tuple[Tensor, Tensor]:
    """Per-row GIFT loss [n] (fp32) and stats [n, 3] (target mass on y*, base prob of y*, nll).

    Overwrites ``z`` with d loss / d z. ``r=None`` is plain SFT (as is ``beta=inf``, which still reports the
    base's stats). ``z`` and ``r`` are [n, V] with unit stride in V.
    """
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _kernels()
    n, v = z.shape
    if z.stride(1) != 1 or (r is not None and (r.stride(1) != 1 or r.shape != z.shape)):
        raise ValueError("gift_rows_: z and r must be [n, V] with unit stride in V")
    if r is None:
        mode, log_em1, r = 1, 0.0, z
    elif math.isinf(beta):
        mode, log_em1 = 3, 0.0
    elif beta == 0:
        mode, log_em1 = 2, 0.0
    else:
        mode, log_em1 = 0, beta + math.log(-math.expm1(-beta))  # log(e^beta - 1)
    loss = torch.empty(n, dtype=torch.float32, device=z.device)
    stats = torch.empty(n, 3, dtype=torch.float32, device=z.device)
    if n == 0:
        return loss, stats
    import triton

    block = block or min(MAX_BLOCK, triton.next_power_of_2(v))
    extra = {} if z.device.type == "cpu" else {"num_warps": num_warps or max(4, min(32, block // 256))}
    _KERNEL[(n,)](z, z.stride(0), r, r.stride(0), labels.contiguous(), loss, stats, v, log_em1,
                  MODE=mode, BLOCK=block, **extra)
    return loss, stats


def check_runnable(device: torch.device | str) -> None:
    """One line instead of a driver error: compiled kernels need CUDA; CPU tensors need the interpreter."""
    if torch.device(device).type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("loss backend 'triton' runs on CUDA tensors (or on CPU with TRITON_INTERPRET=1, for tests)")


def triton_chunked_forward(obj, hidden, weight, labels, ref_hidden, ref_weight, ref_logits, old_logprobs,
                           chunk_size, need_dx, need_dw, closed_form, accum_dtype, diag_sums):
    """``BACKENDS["triton"]`` of :mod:`giftlab.objectives.heads` (same signature and results as the torch loop)."""
    check_supported(obj)
    check_runnable(hidden.device)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= weight.shape[0]):
        # the kernel would read outside the row without an error (torch's gather raises)
        raise ValueError(f"loss backend 'triton': labels must be in [0, {weight.shape[0]})")
    beta = math.inf if obj.name == "sft" else float(obj.hparams["beta"])
    n = hidden.shape[0]
    per_token, dx, dw = grad_buffers(hidden, weight, need_dx, need_dw, accum_dtype)  # the kernel itself is fp32
    for s in range(0, n, chunk_size):
        e = min(n, s + chunk_size)
        x = hidden[s:e]
        z = x @ weight.T  # under autocast (sft.bf16) in its dtype, as the model's own lm_head
        r = None
        if obj.name == "gift":
            with outside_autocast(x):  # the base's logits in fp32, as the plain head has them
                r = ref_logits[s:e].contiguous() if ref_logits is not None else ref_hidden[s:e] @ ref_weight.T
        loss, stats = gift_rows_(z, r, labels[s:e], beta)
        per_token[s:e] = loss
        if diag_sums is not None:
            _add_diag(diag_sums, obj, stats)
        del r
        contract_chunk(z, x, weight, dx[s:e] if need_dx else None, dw)  # z now holds d loss / d z
        del z
    return per_token.sum(), per_token, dx, dw


def _add_diag(sums: dict, obj, stats: Tensor) -> None:
    """The diagnostics the torch path reports (``Objective.diag_terms``): nll, and GIFT's target-mass terms."""
    a, r_y, nll = stats.unbind(1)
    terms = {"nll": nll, **(target_mass_terms(a, r_y) if obj.name == "gift" else {})}
    for key, val in terms.items():
        sums[key] = sums.get(key, 0.0) + val.sum()
