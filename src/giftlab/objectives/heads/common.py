"""What every loss-head backend shares: the chunk-size rule, the per-chunk gradient contraction and where autocast
applies (the projection and the contraction, as for the plain head; not the reference logits or the objective)."""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_CHUNK_BYTES = 1 << 30  # aim for one fp32 [chunk, V] temporary of <= 1 GiB


def default_chunk_size(n: int, vocab: int, budget_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Tokens per chunk so that one fp32 [chunk, V] tensor fits ``budget_bytes``: a multiple of 64, >= 64, capped at
    ``n``."""
    c = max(64, (budget_bytes // (4 * vocab)) // 64 * 64)
    return max(1, min(n, c))


def grad_buffers(hidden: Tensor, weight: Tensor, need_dx: bool, need_dw: bool, accum_dtype: torch.dtype):
    """(per_token [N], dX [N, H] or None, dW [V, H] accumulator or None) for a backend's chunk loop."""
    per_token = torch.empty(hidden.shape[0], dtype=torch.float64 if hidden.dtype == torch.float64 else torch.float32,
                            device=hidden.device)
    dx = torch.empty_like(hidden) if need_dx else None
    dw = torch.zeros(weight.shape, dtype=accum_dtype, device=weight.device) if need_dw else None
    return per_token, dx, dw


def outside_autocast(t: Tensor):
    """Autocast off on ``t``'s device: the reference logits and the objective, which the trainer's plain head computes
    outside the policy's autocast forward (in fp32: the frozen base is not prepared by accelerate; the policy's
    logits leave the forward as fp32), while the chunked head runs inside it (``call_with_head``)."""
    return torch.autocast(t.device.type, enabled=False)


def contract_chunk(g: Tensor, x: Tensor, weight: Tensor, dx_rows: Tensor | None, dw: Tensor | None) -> None:
    """dX_c = dz W (into ``dx_rows``) and dW += dz^T X_c, for one chunk's logit gradient ``g``.

    Under autocast (``sft.bf16`` over fp32 weights: ``g`` is in the logits' bf16) both products run in autocast's
    dtype, on autocast's copies of W and X, as the plain head's backward runs them, and are cast into the buffers'
    dtype (dX: the hidden states'; dW: the fp32 accumulator), as autograd casts them back to the leaves' dtype.
    """
    same = not torch.is_autocast_enabled(g.device.type) and g.dtype == x.dtype == weight.dtype
    if dx_rows is not None:
        if same and dx_rows.dtype == g.dtype:
            torch.mm(g, weight, out=dx_rows)
        else:
            dx_rows.copy_(g @ weight)
    if dw is not None:
        if same and dw.dtype == g.dtype:
            dw.addmm_(g.T, x)
        else:
            dw.add_(g.T @ x)


MODES = ("auto", "plain", "chunked")


def head_chunk_size(mode: str, n_tokens: int, vocab: int, has_bias: bool = False) -> int | None:
    """None for the plain head, else the chunk size (``sft.loss_head``): ``plain``; ``chunked``; ``auto`` chunks
    only when the [N, V] fp32 logits would not fit one chunk budget. An ``lm_head`` with a bias is always plain."""
    if mode not in MODES:
        raise ValueError(f"sft.loss_head: unknown head {mode!r} (one of {', '.join(MODES)})")
    if mode == "plain" or has_bias:
        return None
    chunk = default_chunk_size(n_tokens, vocab)
    if mode == "chunked":
        return chunk
    return chunk if chunk < n_tokens else None
