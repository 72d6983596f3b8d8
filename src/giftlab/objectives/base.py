"""Core types of the objectives package: the token batch, the registry and the `Objective` wrapper.

An objective is a plain function ``fn(batch: TokenBatch, **hparams) -> Tensor[N]`` that returns the per-token
loss at the N gathered (masked) response positions. It is registered once with :func:`register`, which records its
defaults, validation and what the trainer must supply (reference logits, PSFT snapshot log-probs). The trainer
aggregates ``sum(per_token) / num_items`` identically for every objective.

Optionally an objective registers ``value_and_grad(batch, **hparams) -> (per_token, dlogits)``, a closed-form
gradient w.r.t. the logits (of ``per_token.sum()``). The chunked loss head uses it instead of per-chunk autograd,
which saves time and memory; it is the hook a fused (e.g. Triton) kernel would replace.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from giftlab.lazy import torch  # imported on first use: giftlab.lazy

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "TokenBatch",
    "ObjectiveSpec",
    "Objective",
    "OBJECTIVES",
    "register",
    "get_objective",
    "diagnostics",
    "diagnostic_sums",
    "compute_dtype",
]


@dataclass
class TokenBatch:
    """Tensors gathered at the N masked response positions only.

    logits:       [N, V] student logits, any float dtype (objectives compute in fp32, or fp64 if given fp64).
    labels:       [N] int64 target token ids y* (all valid; no ignore index).
    ref_logits:   [N, V] logits of the frozen reference (base) model, or None.
    old_logprobs: [N] log pi_old(y*) of the PSFT snapshot, or None.
    """

    logits: Tensor
    labels: Tensor
    ref_logits: Tensor | None = None
    old_logprobs: Tensor | None = None


def compute_dtype(x: Tensor) -> torch.dtype:
    """fp64 stays fp64 (tests); everything else is computed in fp32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def upcast(x: Tensor) -> Tensor:
    return x.to(compute_dtype(x))


Validator = Callable[[dict], None]


@dataclass(frozen=True)
class ObjectiveSpec:
    """Registry entry of one objective."""

    name: str
    fn: Callable[..., Tensor]
    defaults: Mapping[str, Any]
    label: str = ""  # the paper's row label (Tables 1-4, claims); default: the name
    beta_swept: bool = False  # one SFT run per β of sft.gift_betas (GIFT), else one run
    needs_ref: bool = False
    needs_old: bool = False
    full_vocab: bool = True  # has terms over the whole vocabulary (chunking saves the most there)
    validate: Validator | None = None
    # raises ValueError (why) for hparams under which the cached reference's error bound does not hold
    validate_cached_ref: Validator | None = None
    trainer_keys: frozenset = frozenset()  # hparams for the trainer only, not passed to fn
    aliases: Mapping[str, str] = field(default_factory=dict)  # alternative hparam spellings -> canonical
    diag_fn: Callable[..., dict] | None = None  # (batch, **hp) -> {name: per-token tensor [N]}
    value_and_grad: Callable[..., tuple] | None = None  # (batch, **hp) -> (per_token [N], dlogits [N,V])


OBJECTIVES: dict[str, ObjectiveSpec] = {}


def register(
    name: str,
    *,
    label: str | None = None,
    beta_swept: bool = False,
    defaults: Mapping[str, Any] | None = None,
    needs_ref: bool = False,
    needs_old: bool = False,
    full_vocab: bool = True,
    validate: Validator | None = None,
    validate_cached_ref: Validator | None = None,
    trainer_keys: tuple[str, ...] = (),
    aliases: Mapping[str, str] | None = None,
    diag_fn: Callable[..., dict] | None = None,
    value_and_grad: Callable[..., tuple] | None = None,
):
    """Decorator: register ``fn(batch, **hparams) -> [N]`` under ``name``.

    The registry is the one list of objectives: the config's ``sft.methods`` / ``sft.objective_params`` are
    checked against it, the grid makes one run per objective (``beta_swept``: one per β of ``sft.gift_betas``),
    and the reports label its runs ``label``. Every hyperparameter ``fn`` reads needs a default here (its type is
    the type the config's value must have); a registration that cannot work is refused here, in one line.
    """

    def deco(fn):
        _check_registration(name, label or name, dict(defaults or {}), beta_swept, validate,
                            tuple(f for f in (fn, value_and_grad) if f is not None), tuple(trainer_keys))
        OBJECTIVES[name] = ObjectiveSpec(
            name=name,
            fn=fn,
            defaults=dict(defaults or {}),
            label=label or name,
            beta_swept=beta_swept,
            needs_ref=needs_ref,
            needs_old=needs_old,
            full_vocab=full_vocab,
            validate=validate,
            validate_cached_ref=validate_cached_ref,
            trainer_keys=frozenset(trainer_keys),
            aliases=dict(aliases or {}),
            diag_fn=diag_fn,
            value_and_grad=value_and_grad,
        )
        return fn

    return deco


def _check_registration(name: str, label: str, defaults: dict, beta_swept: bool, validate: Validator | None,
                        functions: tuple = (), trainer_keys: tuple = ()) -> None:
    """Mistakes of a new objective's ``register(...)``, said when its module is imported rather than later as a
    config error or in the middle of a training job."""
    hparams = {k: v for k, v in defaults.items() if k not in trainer_keys}
    for fn in functions:  # fn and value_and_grad are called as fn(batch, **hparams)
        try:
            inspect.signature(fn).bind(None, **hparams)
        except TypeError as exc:
            raise ValueError(f"objective {name!r}: {getattr(fn, '__name__', 'its function')}(batch, "
                             f"**{sorted(hparams)}) cannot be called ({exc}): every hyperparameter it takes needs a "
                             "default in register(defaults=...)") from None
        except ValueError:  # no signature to read (a builtin): called as it is
            pass
    if name in OBJECTIVES:
        raise ValueError(f"objective {name!r} registered twice")
    clash = next((other for other, spec in OBJECTIVES.items() if spec.label == label), None)
    if clash is not None:
        raise ValueError(f"objective {name!r}: label {label!r} is taken by objective {clash!r} (the tables' rows "
                         "would be indistinguishable)")
    if beta_swept and "beta" not in defaults:
        raise ValueError(f"objective {name!r}: beta_swept=True needs a 'beta' default (each run gets one β of "
                         "sft.gift_betas as its 'beta')")
    if validate is not None:
        try:
            validate(dict(defaults))
        except KeyError as exc:
            raise ValueError(f"objective {name!r}: its validator reads hyperparameter {exc}, which has no default "
                             "in its register(defaults=...)") from None
        except ValueError as exc:
            raise ValueError(f"objective {name!r}: its own defaults fail its validator: {exc}") from None


def _coerce(name: str, key: str, value: Any, default: Any) -> Any:
    """Coerce a config value to the type of its default; one-line ValueError on failure."""
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, int):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(value)
        if isinstance(default, float) or default is None:
            if isinstance(value, bool):
                raise TypeError
            v = float(value)
            if math.isnan(v):
                raise TypeError
            return v
        if isinstance(default, str):
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"objective {name!r}: hyperparameter {key!r} must be a {type(default).__name__} (the type of its "
            f"registered default, {default!r}), got {value!r}"
        ) from None
    return value


class Objective:
    """A resolved objective: ``obj(batch) -> [N]`` per-token loss.

    Attributes: ``name``, ``hparams`` (all resolved hyperparameters, defaults filled in, including trainer-only
    ones such as PSFT's ``snapshot_every``), ``needs_ref``, ``needs_old``, ``full_vocab``, ``spec``.
    """

    def __init__(self, spec: ObjectiveSpec, hparams: dict):
        self.spec = spec
        self.name = spec.name
        self.hparams = dict(hparams)
        self.needs_ref = spec.needs_ref
        self.needs_old = spec.needs_old
        self.full_vocab = spec.full_vocab
        self._fn_kwargs = {k: v for k, v in self.hparams.items() if k not in spec.trainer_keys}

    def check_cached_reference(self) -> None:
        """ValueError (one line) if training on the cached reference (giftlab.training.reference) would break
        its error bound under these hyperparameters."""
        if self.spec.validate_cached_ref is not None:
            self.spec.validate_cached_ref(self.hparams)

    @property
    def has_value_and_grad(self) -> bool:
        return self.spec.value_and_grad is not None

    def _check(self, batch: TokenBatch) -> None:
        if batch.logits.dim() != 2 or batch.labels.dim() != 1 or batch.logits.shape[0] != batch.labels.shape[0]:
            raise ValueError(
                f"objective {self.name!r}: expected logits [N,V] and labels [N], got "
                f"{tuple(batch.logits.shape)} and {tuple(batch.labels.shape)}"
            )
        if self.needs_ref:
            if batch.ref_logits is None:
                raise ValueError(f"objective {self.name!r} needs ref_logits (frozen reference model)")
            if batch.ref_logits.shape != batch.logits.shape:
                raise ValueError(
                    f"objective {self.name!r}: ref_logits shape {tuple(batch.ref_logits.shape)} != logits shape "
                    f"{tuple(batch.logits.shape)}"
                )
        if self.needs_old:
            if batch.old_logprobs is None:
                raise ValueError(f"objective {self.name!r} needs old_logprobs (PSFT snapshot)")
            if batch.old_logprobs.shape != batch.labels.shape:
                raise ValueError(f"objective {self.name!r}: old_logprobs must be [N] like labels")

    def _checked(self, per_token, batch: TokenBatch, what: str = "") -> Tensor:
        """An objective returns one loss per token: a reduced (mean/sum) value would train with the wrong
        gradient scale on one head and the wrong logged loss on the other, silently."""
        if getattr(per_token, "shape", None) != batch.labels.shape:
            raise ValueError(f"objective {self.name!r}: {what}returned shape {tuple(getattr(per_token, 'shape', ()))}"
                             f", expected [N] = {tuple(batch.labels.shape)} (one loss per token, not reduced)")
        return per_token

    def _run(self, fn, batch: TokenBatch):
        try:
            return fn(batch, **self._fn_kwargs)
        except KeyError as exc:
            key = exc.args[0] if exc.args else None
            if not isinstance(key, str) or key in self._fn_kwargs:
                raise
            raise ValueError(f"objective {self.name!r}: KeyError {exc} in its function: a hyperparameter without a "
                             f"default in its register(defaults=...)? (it has: {sorted(self.spec.defaults)})") from exc

    def __call__(self, batch: TokenBatch) -> Tensor:
        self._check(batch)
        return self._checked(self._run(self.spec.fn, batch), batch)

    def probe(self) -> None:
        """Run the objective once on a 3-token batch (vocabulary 5): a hyperparameter read without a default or a
        reduced output is one line when a job starts, not a traceback in the trainer's first step."""
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(3, 5, generator=g, dtype=torch.float64)
        labels = torch.tensor([0, 2, 4])
        batch = TokenBatch(logits, labels,
                           torch.randn(3, 5, generator=g, dtype=torch.float64) if self.needs_ref else None,
                           torch.log_softmax(logits, -1).gather(-1, labels[:, None])[:, 0] if self.needs_old else None)
        self(batch)
        self.value_and_grad(batch)

    def value_and_grad(self, batch: TokenBatch) -> tuple[Tensor, Tensor]:
        """(per_token [N] detached, d(sum per_token)/d logits [N,V] in the compute dtype).

        Uses the registered closed form when there is one, otherwise autograd on ``self(batch)``.
        """
        self._check(batch)
        if self.spec.value_and_grad is not None:
            with torch.no_grad():
                per_token, g = self._run(self.spec.value_and_grad, batch)
            return self._checked(per_token, batch, "value_and_grad "), g
        z = batch.logits.detach().requires_grad_(True)
        with torch.enable_grad():
            per_token = self._checked(self._run(self.spec.fn, TokenBatch(z, batch.labels, batch.ref_logits,
                                                                         batch.old_logprobs)), batch)
            (g,) = torch.autograd.grad(per_token.sum(), z)
        return per_token.detach(), g

    def diag_terms(self, batch: TokenBatch) -> dict[str, Tensor]:
        """Per-token diagnostic tensors [N] (no grad): always ``nll``; objective-specific extras."""
        self._check(batch)
        with torch.no_grad():
            z = upcast(batch.logits)
            nll = torch.logsumexp(z, -1) - z.gather(-1, batch.labels[:, None]).squeeze(-1)
            out = {"nll": nll}
            if self.spec.diag_fn is not None:
                out.update(self.spec.diag_fn(batch, **self._fn_kwargs))
        return out

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"Objective({self.name!r}{', ' if hp else ''}{hp})"


def get_objective(name: str, **hparams: Any) -> Objective:
    """Resolve an objective by name. Unknown name, unknown or invalid hyperparameter -> one-line ValueError.

    ``None`` values mean "use the default". ``lam`` is accepted as an alias of ``lambda`` (a Python keyword).
    """
    spec = OBJECTIVES.get(name)
    if spec is None:
        raise ValueError(f"unknown objective {name!r}; known: {sorted(OBJECTIVES)}")
    resolved = dict(spec.defaults)
    for key, value in hparams.items():
        canon = spec.aliases.get(key, key)
        if canon not in spec.defaults:
            raise ValueError(
                f"objective {name!r}: unknown hyperparameter {key!r}; allowed: {sorted(spec.defaults)}"
            )
        if value is None:
            continue
        resolved[canon] = _coerce(name, canon, value, spec.defaults[canon])
    if spec.validate is not None:
        spec.validate(resolved)
    return Objective(spec, resolved)


def diagnostic_sums(batch: TokenBatch, obj: Objective) -> dict[str, Tensor]:
    """Per-batch sums of the per-token diagnostics (0-d tensors), plus ``n`` (token count); for accumulation."""
    terms = obj.diag_terms(batch)
    out = {k: v.sum() for k, v in terms.items()}
    out["n"] = torch.tensor(float(batch.labels.shape[0]))
    return out


def diagnostics(batch: TokenBatch, obj: Objective) -> dict[str, float]:
    """Token means of the per-token diagnostics as floats.

    Every objective: ``nll`` (mean -log pi_theta(y*)). GIFT: ``target_mass_y`` (mean pi*(y*)),
    ``frac_target_mass_below_0.99``, ``ref_prob_y`` (mean p_ref(y*)). KD/ASFT: ``kl``. PSFT: ``ratio``,
    ``clip_frac`` (fraction of tokens with zero gradient because r > 1+eps_high). Entropy: ``entropy``.
    """
    n = batch.labels.shape[0]
    if n == 0:
        return {}
    return {k: float(v.sum()) / n for k, v in obj.diag_terms(batch).items()}


# ------------------------------------------------------------------------------------------------ validators


def check_range(name: str, key: str, lo: float | None = None, hi: float | None = None, allow_inf: bool = False):
    """Build a validator check ``lo <= hp[key] <= hi`` (finite unless allow_inf)."""

    def check(hp: dict) -> None:
        v = hp[key]
        if not allow_inf and math.isinf(v):
            raise ValueError(f"objective {name!r}: {key} must be finite, got {v}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise ValueError(f"objective {name!r}: {key} must be in {rng}, got {v}")

    return check


def check_choice(name: str, key: str, choices: tuple[str, ...]):
    def check(hp: dict) -> None:
        if hp[key] not in choices:
            raise ValueError(f"objective {name!r}: {key} must be one of {list(choices)}, got {hp[key]!r}")

    return check


def all_of(*checks: Validator) -> Validator:
    def check(hp: dict) -> None:
        for c in checks:
            c(hp)

    return check
