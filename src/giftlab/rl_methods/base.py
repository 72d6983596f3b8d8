"""The registry of RL-stage methods: what a GRPO-stage run trains with besides plain GRPO.

A method is one module that registers an :class:`RLMethod`: its paper label, its hyperparameters with their
released defaults (checked in one place, :meth:`RLMethod.check`, one-line errors naming ``unified.<name>.<key>``),
the ``trl.GRPOConfig`` fields its algorithm fixes (:attr:`RLMethod.grpo_overrides`), and a mixin over TRL's
``GRPOTrainer`` that holds the differences from plain GRPO. The mixin is named by import path, so the registry
imports neither TRL nor the trainers (Snakemake builds the plan from it).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from giftlab.cli import ConfigError
from giftlab.lazy import torch  # imported on first use: giftlab.lazy


@dataclass(frozen=True)
class RLMethod:
    """Registry entry of one RL-stage method.

    ``defaults``: its hyperparameters (``unified.<name>`` in the config), the released values;
    ``grpo_overrides``: ``params -> {GRPOConfig field: value}``, the settings the method's algorithm fixes whatever
    the ``grpo`` section says (the ``grpo`` section keeps the budget: steps, batch, G, lr, lengths, temperature);
    ``mixin``: ``"module:Class"``, a class placed before ``trl.GRPOTrainer`` in the trainer's bases (None: plain
    GRPO); ``needs_demonstrations``: the RL rows must carry a demonstration (``data.solution_key``).
    """

    name: str
    label: str
    method_class: str
    defaults: Mapping[str, Any]
    grpo_overrides: Callable[[Mapping[str, Any]], dict[str, Any]] = lambda params: {}
    mixin: str | None = None
    needs_demonstrations: bool = False
    validate: Callable[[Mapping[str, Any]], None] | None = None
    validate_with_grpo: Callable[[Mapping[str, Any], Mapping[str, Any]], None] | None = None
    description: str = ""

    def check(self, params: Mapping[str, Any] | None, grpo: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The method's hyperparameters: ``params`` over the defaults, each of its default's type; with ``grpo``
        (the config's ``grpo`` section) also checked against it (``validate_with_grpo``)."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ConfigError(f"config error: unified.{self.name}.{unknown[0]}: unknown key "
                              f"(one of {', '.join(self.defaults) or 'none'})")
        out = dict(self.defaults)
        for key, value in params.items():
            out[key] = _coerce(f"unified.{self.name}.{key}", value, self.defaults[key])
        validators = [self.validate] if self.validate else []
        if grpo is not None and self.validate_with_grpo is not None:
            validators.append(lambda params: self.validate_with_grpo(params, grpo))
        for validate in validators:
            try:
                validate(out)
            except ConfigError:
                raise
            except ValueError as exc:  # validators say "<key>: <what is wrong>" or "<key> must ..."
                raise ConfigError(f"config error: unified.{self.name}.{exc}") from None
        return out

    def trainer_class(self, base: type, params: Mapping[str, Any]) -> type:
        """``base`` (TRL's GRPOTrainer) with this method's mixin in front of it; the mixin reads its checked
        hyperparameters as ``self.method_params``."""
        if self.mixin is None:
            return base
        module, _, name = self.mixin.partition(":")
        mixin = getattr(importlib.import_module(module), name)
        return type(f"{mixin.__name__}GRPOTrainer", (mixin, base), {"method_params": dict(params)})


def demonstration_ids(tokenizer, text: str, max_completion_length: int) -> list[int]:
    """A demonstration's token ids + EOS, as LUFFY's expert trace and ReLIFT's SFT target; refused when longer than
    ``max_completion_length``: cut, it would lose its answer and its EOS (``train_grpo`` drops such rows before
    training: ``giftlab.training.grpo.demonstrations_that_fit``)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(ids) > max_completion_length:
        raise ValueError(f"a demonstration of {len(ids)} tokens with EOS is longer than max_completion_length "
                         f"({max_completion_length}); train on rows filtered by "
                         f"giftlab.training.grpo.demonstrations_that_fit, as train_grpo does")
    return ids


#: The released runs' layout (LUFFY ``exp_scripts/train.sh``, ReLIFT ``examples/math-7b/train.sh``): one node of 8
#: GPUs (``trainer.n_gpus_per_node=8``), micro-batches packed to at most 32,768 tokens per GPU
#: (``use_dynamic_bsz=True``, ``ppo_max_token_len_per_gpu=32768``).
RELEASED_LAYOUT = {"released_gpus": 8, "released_micro_batch_tokens": 32768}


def released_entropy_coef(coef: float, update_tokens: int, update_sequences: int, gpus: int,
                          micro_batch_tokens: int) -> float:
    """The entropy coefficient that, beside a policy term Σ ℓ / (sequences × L), weighs the entropy bonus against
    the policy term as the released update does.

    Released (verl, ``dp_actor.update_policy`` / ``mix_actor.update_policy``, gradient_accumulation = 1 under
    ``use_dynamic_bsz``): each of ``gpus`` GPUs packs its 1/``gpus`` share of the update's sequences (balanced by
    tokens, ``_balance_batch``) into m = ⌈its tokens / ``micro_batch_tokens``⌉ micro-batches
    (``rearrange_micro_batches``, prompt + response tokens) and backpropagates, for each,
    Σ_mb ℓ / L − coef · token-mean_mb H, summed; the GPUs are averaged. With balanced micro-batches that is
    Σ ℓ / (gpus · L) − coef · m · token-mean H over the whole update, i.e. (sequences / gpus) times
    Σ ℓ / (sequences · L) − coef · m · gpus / sequences · token-mean H. A plain ``coef`` beside Σ ℓ / (sequences · L)
    weighs the bonus sequences / (gpus · m) times more (512 / (8 × 4) = 16 at the paper's batch and ~2k-token
    sequences)."""
    per_gpu = -(-int(update_tokens) // int(gpus))
    micro_batches = max(1, -(-per_gpu // int(micro_batch_tokens)))
    return float(coef) * micro_batches * int(gpus) / max(1, int(update_sequences))


def update_size(trainer, inputs) -> tuple[int, int]:
    """(prompt + completion tokens, sequences) of the optimiser update that TRL's current micro-batch ``inputs``
    belongs to, over every process: the ``gradient_accumulation_steps`` slices of the buffered generation batch that
    make it (``inputs`` alone when called outside the Trainer's loop, with no buffered batch). Collective (every
    process calls it for the same micro-batch)."""
    args = trainer.args
    batches = [inputs]
    if getattr(trainer, "_buffered_inputs", None) is not None:
        chunk = trainer._step % args.steps_per_generation
        first = chunk - chunk % args.gradient_accumulation_steps
        batches = trainer._buffered_inputs[first:first + args.gradient_accumulation_steps]
    device = trainer.accelerator.device
    tokens = sum((b["prompt_mask"].sum() + b["completion_mask"].sum()).to(device, torch.long) for b in batches)
    sequences = sum(int(b["completion_mask"].size(0)) for b in batches)
    local = torch.stack([tokens, torch.tensor(sequences, dtype=torch.long, device=device)])  # one device sync
    tokens, sequences = trainer.accelerator.reduce(local, reduction="sum").tolist()
    return int(tokens), int(sequences)


def training_entropy_coef(trainer, params: Mapping[str, Any], inputs) -> float:
    """``params["entropy_coef"]`` as the released update weighs it (:func:`released_entropy_coef`) for the training
    micro-batch ``inputs``; as given in evaluation."""
    coef = float(params["entropy_coef"])
    if not trainer.model.training or coef == 0 or params["released_micro_batch_tokens"] == 0:
        return coef
    tokens, sequences = update_size(trainer, inputs)
    return released_entropy_coef(coef, tokens, sequences, params["released_gpus"],
                                 params["released_micro_batch_tokens"])


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config error: {key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config error: {key}: expected a number, got {value!r}") from None
        if isinstance(default, int):
            if number != int(number):
                raise ConfigError(f"config error: {key}: expected an integer, got {value!r}")
            return int(number)
        return number
    raise ConfigError(f"config error: {key}: expected a {type(default).__name__}, got {value!r}")


RL_METHODS: dict[str, RLMethod] = {}


def register(method: RLMethod) -> RLMethod:
    if method.name in RL_METHODS:
        raise ValueError(f"RL method {method.name!r} registered twice")
    RL_METHODS[method.name] = method
    return method


def get_method(name: str) -> RLMethod:
    try:
        return RL_METHODS[name]
    except KeyError:
        raise ConfigError(f"config error: unified.methods: unknown RL method {name!r} "
                          f"(one of {', '.join(RL_METHODS)})") from None


def positive(*keys: str, allow_zero: tuple[str, ...] = ()) -> Callable[[Mapping[str, Any]], None]:
    """A validator: each of ``keys`` > 0 (>= 0 for those in ``allow_zero``)."""

    def check(params: Mapping[str, Any]) -> None:
        for key in keys:
            low_ok = key in allow_zero
            if params[key] < 0 or (params[key] == 0 and not low_ok):
                raise ValueError(f"{key}: must be {'>= 0' if low_ok else '> 0'}, got {params[key]}")

    return check
