"""The SFT loss head: from the model's last hidden states and its ``lm_head`` weight to the objective's loss.

The head owns the projection (hidden @ W^T), the choice between the plain path (logits materialised) and the
chunked one (never more than a chunk of [N, V] logits alive), and the chunked path's backend; the trainer asks it
(:func:`head_chunk_size`, :func:`choose_backend`, :func:`chunked_loss`) and chooses nothing itself.

Modules, each importing only the ones below it:

    common      the chunk-size rule; gradient buffers and the per-chunk contraction dX = dz W, dW += dz^T X;
                what runs outside autocast (the reference logits, the objective: fp32 as in the plain head)
    torch_loop  the plain-torch backend (per chunk: logits, loss, closed-form or autograd logit gradient)
    triton      the fused Triton backend (SFT and exact GIFT), imported only when asked for
    head        the autograd Function over a backend, chunked_loss / plain_loss / loss_head, BACKENDS
"""

from __future__ import annotations

import logging

import torch

from .common import default_chunk_size, head_chunk_size
from .head import BACKENDS, chunked_loss, loss_head, plain_loss

__all__ = ["BACKENDS", "chunked_loss", "loss_head", "plain_loss", "default_chunk_size", "head_chunk_size",
           "choose_backend"]

log = logging.getLogger(__name__)
def choose_backend(backend: str, objective) -> str:
    """The chunked head's backend for this objective, checked before training (one line naming the key).

    ``triton`` runs the fused kernel for the objectives it implements (SFT, exact GIFT) and the torch loop
    for the others, so one setting serves a grid of methods.
    """
    if backend == "torch":
        return backend
    if backend != "triton":
        raise ValueError(f"sft.loss_backend: unknown backend {backend!r} (torch or triton)")
    try:
        import triton  # noqa: F401
    except ImportError:
        raise ValueError("sft.loss_backend: 'triton' needs the triton package (pip install triton)") from None
    from .triton import SUPPORTED, check_runnable, supports

    try:
        check_runnable("cuda" if torch.cuda.is_available() else "cpu")
    except ValueError as exc:
        raise ValueError(f"sft.loss_backend: {exc}") from None
    if not supports(objective):
        log.info("sft.loss_backend: the triton kernel supports %s; %r uses the torch loop", SUPPORTED, objective)
        return "torch"
    return backend
