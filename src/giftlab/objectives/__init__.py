"""SFT-stage objectives of the GIFT reproduction, by name.

    from giftlab.objectives import get_objective, OBJECTIVES, TokenBatch
    obj = get_objective("gift", beta=20.0)         # ValueError (one line) for unknown names / bad hparams
    obj.needs_ref, obj.needs_old, obj.hparams
    per_token = obj(TokenBatch(logits=..., labels=..., ref_logits=..., old_logprobs=...))   # [N]

The registered objectives are the keys of ``OBJECTIVES`` (each defined, formula included, in its module's docstring).
Memory-efficient head from hidden states: ``chunked_loss`` / ``loss_head`` (package ``heads``).

Adding an objective (docs/architecture.md, "Adding an objective"): one function decorated with ``@register(...)``
in a module imported below, every hyperparameter it reads given a default there, torch taken from ``giftlab.lazy``
(Snakemake's own process reads this registry and never imports torch); then one case in each of
``tests/objectives/test_objectives.py`` (with an independent reference in ``ref_token``) and
``tests/objectives/test_chunked_head.py``.
"""

from .base import (
    OBJECTIVES,
    Objective,
    ObjectiveSpec,
    TokenBatch,
    diagnostic_sums,
    diagnostics,
    get_objective,
    register,
)
from . import sft as _sft  # noqa: F401  (registers sft; each module below registers the objective it is named for)
from . import sft_entropy as _sft_entropy  # noqa: F401
from . import sft_ls as _sft_ls  # noqa: F401
from . import sft_kd as _sft_kd  # noqa: F401
from . import dft as _dft  # noqa: F401
from . import asft as _asft  # noqa: F401
from . import psft as _psft  # noqa: F401  (registers psft)
from . import gift as _gift  # noqa: F401  (registers gift)
from .gift import gift_target

# The loss heads subclass torch's autograd Function: imported on first use, so reading the registry (Snakemake's own
# process: the config checks and the plan) does not import torch (giftlab.lazy).
_HEADS = ("BACKENDS", "chunked_loss", "default_chunk_size", "loss_head", "plain_loss")


def __getattr__(name):
    if name in _HEADS:
        from . import heads

        return getattr(heads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveSpec",
    "TokenBatch",
    "get_objective",
    "register",
    "diagnostics",
    "diagnostic_sums",
    "chunked_loss",
    "loss_head",
    "plain_loss",
    "default_chunk_size",
    "BACKENDS",
    "gift_target",
]
