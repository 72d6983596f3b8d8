"""GIFT: cross-entropy to a finite-temperature Gibbs target built from the frozen base model.

    pi*_t = softmax(log r_t + beta * e_{y*})        (stop-gradient; constant target)
    l_t   = -sum_v pi*_t(v) log pi_theta(v | s_t)   (gradient w.r.t. logits: q - pi*)

The base distribution r depends on ``variant``:

* ``"exact"``:    r = (1 - smooth_lambda) * softmax(ref) + smooth_lambda / V, in log space (no floor);
                  with smooth_lambda = 0 this is log_softmax(ref_logits) (the paper's formula).
* ``"released"``: the released code (zzy1127/GIFT fsdp_gift_trainer.py): p~ = (1-smooth_lambda) softmax(ref) +
                  smooth_lambda/V, target logits log(p~ + 1e-10) + beta at the label, softmax. The +1e-10 floors
                  log p_ref at ~ -23, so it differs from "exact" only where p_ref(y*) <~ 1e-9 (or, negligibly, where
                  non-target tokens have p_ref <~ 1e-10).

Computed in closed form, never materialising pi* as a softmax (Z = 1 + (e^beta - 1) r(y*) normalises r exp(beta e_y),
so pi* = r / Z + (1 - 1/Z) e_y):
    pi* = (1 - b) r + b e_y,   b = sigmoid(log(e^beta - 1) + log r(y*))  (= (e^beta-1) r_y / (1 + (e^beta-1) r_y))
    l   = b * (-log q(y*)) + (1 - b) * CE(r, q)
beta = 0 gives the base distribution as target (pure forward-KL distillation); beta = inf is accepted and gives
b = 1, i.e. the one-hot target of plain SFT (same value and gradient as ``sft``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from giftlab.lazy import torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

from .base import TokenBatch, all_of, check_choice, check_range, register, upcast
from .sft import ce_grad_, gather_label

RELEASED_EPS = 1e-10  # the released code's log(p + 1e-10)


def gift_base_logprobs(ref_logits: Tensor, variant: str = "exact", smooth_lambda: float = 0.0) -> Tensor:
    """log r [N, V] (normalised), the base distribution the target tilts towards y*. No grad."""
    with torch.no_grad():
        ref = upcast(ref_logits.detach())
        v = ref.shape[-1]
        logp = torch.log_softmax(ref, -1)
        if variant == "exact":
            if smooth_lambda > 0:
                keep = math.log1p(-smooth_lambda) if smooth_lambda < 1 else -math.inf  # 1: the uniform distribution
                logp = torch.logaddexp(logp + keep, logp.new_tensor(math.log(smooth_lambda / v)))
            return logp
        if variant == "released":
            u = logp.exp_()
            if smooth_lambda > 0:
                u.mul_(1 - smooth_lambda).add_(smooth_lambda / v)
            u = u.add_(RELEASED_EPS).log_()
            return u.sub_(torch.logsumexp(u, -1, keepdim=True))
        raise ValueError(f"objective 'gift': variant must be 'exact' or 'released', got {variant!r}")


def gift_mix_weight(logr_y: Tensor, beta: float) -> Tensor:
    """b = (e^beta - 1) r_y / (1 + (e^beta - 1) r_y) = sigmoid(log(e^beta - 1) + log r_y), stable for any beta."""
    if math.isinf(beta):
        return torch.ones_like(logr_y)
    if beta == 0:
        return torch.zeros_like(logr_y)
    log_em1 = beta + math.log(-math.expm1(-beta))  # log(e^beta - 1)
    return torch.sigmoid(log_em1 + logr_y)


def gift_target(ref_logits: Tensor, labels: Tensor, beta: float = 20.0, variant: str = "exact",
                smooth_lambda: float = 0.0) -> Tensor:
    """The full target pi* [N, V] (materialised; for inspection and tests)."""
    logr = gift_base_logprobs(ref_logits, variant, smooth_lambda)
    b = gift_mix_weight(gather_label(logr, labels), beta)
    t = logr.exp_().mul_(1 - b[:, None])
    return t.scatter_add_(-1, labels[:, None], b[:, None])


def _parts(batch: TokenBatch, hp: dict):
    z = upcast(batch.logits)
    logr = gift_base_logprobs(batch.ref_logits, hp["variant"], hp["smooth_lambda"]).to(z.dtype)
    b = gift_mix_weight(gather_label(logr, batch.labels), hp["beta"])
    return z, logr, b


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    """sum_v a[n, v] * b[n, v] without an [N, V] temporary."""
    return (a[:, None, :] @ b[:, :, None]).reshape(-1)


def _gift_vg(batch: TokenBatch, **hp):
    z, logr, b = _parts(batch, hp)
    logq = torch.log_softmax(z, -1)
    r = logr.exp_()
    loss = -b * gather_label(logq, batch.labels) - (1 - b) * _rowdot(r, logq)
    g = logq.exp_().sub_(r.mul_((1 - b)[:, None]))  # q - (1-b) r - b e_y
    return loss, ce_grad_(g, batch.labels, b[:, None])


def target_mass_terms(a: Tensor, p_y: Tensor) -> dict[str, Tensor]:
    """GIFT's per-token diagnostics from the target mass on y* (``a``) and the base's p(y*)."""
    return {"target_mass_y": a, "frac_target_mass_below_0.99": (a < 0.99).to(a.dtype), "ref_prob_y": p_y}


def _gift_diag(batch: TokenBatch, **hp):
    _, logr, b = _parts(batch, hp)
    r_y = gather_label(logr, batch.labels).exp()
    p_y = torch.softmax(upcast(batch.ref_logits), -1).gather(-1, batch.labels[:, None]).squeeze(-1)
    return target_mass_terms((1 - b) * r_y + b, p_y)


@register(
    "gift",
    label="GIFT",
    beta_swept=True,
    defaults={"beta": 20.0, "variant": "exact", "smooth_lambda": 0.0},
    needs_ref=True,
    validate=all_of(
        check_range("gift", "beta", lo=0.0, allow_inf=True),
        check_choice("gift", "variant", ("exact", "released")),
        check_range("gift", "smooth_lambda", lo=0.0, hi=1.0),
    ),
    value_and_grad=_gift_vg,
    diag_fn=_gift_diag,
)
def gift(batch: TokenBatch, **hp) -> Tensor:
    """GIFT: l = -sum_v pi*(v) log pi_theta(v), pi* = sg(softmax(log r + beta e_{y*})) (see module docstring).

    Defaults: beta = 20, variant = "exact", smooth_lambda = 0 (released config). beta >= 0; inf = plain SFT.
    """
    z, logr, b = _parts(batch, hp)
    logq = torch.log_softmax(z, -1)
    return -b * gather_label(logq, batch.labels) - (1 - b) * _rowdot(logr.exp_(), logq)
