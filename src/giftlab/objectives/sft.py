"""SFT and its simple regularised variants: ``sft``, ``sft_entropy``, ``sft_ls``, ``sft_kd``.

Notation: z = student logits, log q = log_softmax(z), y = y* (label), p = softmax(ref_logits), V = vocab size.
All per-token; the trainer takes the token mean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from giftlab.lazy import LazyModule, torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

from .base import TokenBatch, check_range, register, upcast

F = LazyModule("torch.nn.functional")


def gather_label(x: Tensor, labels: Tensor) -> Tensor:
    return x.gather(-1, labels[:, None]).squeeze(-1)


def ce_grad_(q: Tensor, labels: Tensor, scale: float | Tensor = 1.0) -> Tensor:
    """In place: q -> q - scale * e_y (the gradient of scale * -log q(y) is scale * (q - e_y) when q sums to 1)."""
    q.scatter_add_(-1, labels[:, None], -torch.as_tensor(scale, dtype=q.dtype, device=q.device).expand(q.shape[0], 1))
    return q


# --------------------------------------------------------------------------------------------------------- SFT


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


# ------------------------------------------------------------------------------------------------ SFT + entropy


def _entropy_parts(z: Tensor):
    logq = torch.log_softmax(z, -1)
    q = logq.exp()
    h = -(q * logq).sum(-1)
    return logq, q, h


def _ent_vg(batch: TokenBatch, **hp):
    lam = hp["lambda"]
    z = upcast(batch.logits)
    logq, q, h = _entropy_parts(z)
    loss = -gather_label(logq, batch.labels) - lam * h
    # d(-lam*H)/dz = lam * q * (log q + H)
    g = logq.add_(h[:, None]).mul_(q).mul_(lam).add_(q)
    return loss, ce_grad_(g, batch.labels)


def _ent_diag(batch: TokenBatch, **hp):
    return {"entropy": _entropy_parts(upcast(batch.logits))[2]}


@register(
    "sft_entropy",
    label="SFT + Entropy",
    defaults={"lambda": 0.01},
    aliases={"lam": "lambda"},
    validate=check_range("sft_entropy", "lambda", lo=0.0),
    value_and_grad=_ent_vg,
    diag_fn=_ent_diag,
)
def sft_entropy(batch: TokenBatch, **hp) -> Tensor:
    """SFT with an entropy BONUS: l = -log pi_theta(y*) - lambda * H(pi_theta), H = -sum_v pi log pi (full vocab).

    Gradient flows through H (no stop-gradient); minimising the loss raises the entropy. lambda >= 0.
    """
    logq, _, h = _entropy_parts(upcast(batch.logits))
    return -gather_label(logq, batch.labels) - hp["lambda"] * h


# ------------------------------------------------------------------------------------------ SFT + label smoothing


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


# -------------------------------------------------------------------------------------------------- SFT + KD


def forward_kl(logp_ref: Tensor, logq: Tensor) -> Tensor:
    """KL(p_ref || q) = sum_v p_ref (log p_ref - log q), per row. Gradient only through log q."""
    return (logp_ref.exp() * (logp_ref - logq)).sum(-1)


def _ref_logp(batch: TokenBatch, dtype: torch.dtype) -> Tensor:
    return torch.log_softmax(batch.ref_logits.detach().to(dtype), -1)


def _kd_vg(batch: TokenBatch, **hp):
    alpha = hp["alpha"]
    z = upcast(batch.logits)
    logq = torch.log_softmax(z, -1)
    logp = _ref_logp(batch, z.dtype)
    loss = -gather_label(logq, batch.labels) + alpha * forward_kl(logp, logq)
    # (1+alpha) q - alpha p - e_y
    g = logq.exp_().mul_(1 + alpha).sub_(logp.exp_().mul_(alpha))
    return loss, ce_grad_(g, batch.labels)


def _kl_diag(batch: TokenBatch, **hp):
    z = upcast(batch.logits)
    return {"kl": forward_kl(_ref_logp(batch, z.dtype), torch.log_softmax(z, -1))}


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
    return -gather_label(logq, batch.labels) + hp["alpha"] * forward_kl(_ref_logp(batch, z.dtype), logq)
