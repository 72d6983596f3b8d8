"""What a sharded (FSDP) or replicated (DDP) model needs that a plain module does not.

* :func:`call_with_head`: the chunked loss head needs the final hidden states and the ``lm_head`` weight. Reading
  them around the model (``model.get_decoder()(...)``, ``get_output_embeddings().weight``) bypasses the FSDP unit
  that owns ``lm_head`` (the root when each decoder layer is a unit; under accelerate 1.15's FSDP2 layout, the unit
  it groups with the final norm): its parameters are still sharded there ("'weight' must be 2-D"), and that unit's
  gradient reduction is never scheduled. Instead the model's own forward runs, with its
  ``lm_head`` standing in as ``fn(hidden, weight)`` for that one call (the approach of Liger's fused heads).
* :func:`full_state_dict`: the whole model's weights on the main process, whatever the sharding: FSDP's
  ``SHARDED_STATE_DICT`` setting makes ``Trainer.save_model`` write no weights at all.
* :func:`load_gathered`: PSFT's snapshot of the policy, whole, on every process; :func:`match_forward_dtype` keeps
  it in the dtype the policy's forward computes its parameters in (FSDP2's mixed-precision ``param_dtype``).
* :func:`gathered_for_generation`: FSDP1 has to gather the root unit's parameters for ``generate``; FSDP2 units are
  gathered once for the whole ``generate``, not at every decode step.
* :func:`fp32_master_weights`: a bf16-loaded policy trains fp32 master weights outside FSDP too.
* :func:`trl_reference_in_every_process`: the reference TRL's GRPOTrainer loads itself holds its weights on every
  process under FSDP's CPU-RAM-efficient loading.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable

import torch
from torch import nn

log = logging.getLogger(__name__)


class _HeadCall(nn.Module):
    """Stands in for ``lm_head`` during one forward: ``fn(hidden [B, T, H], weight [V, H])`` instead of the logits.

    The original head stays a child, so the weight is read from the module FSDP manages, while it is gathered.
    """

    def __init__(self, head: nn.Module, fn: Callable[[torch.Tensor, torch.Tensor], Any]):
        super().__init__()
        self.head = head
        self.fn = fn

    def forward(self, hidden: torch.Tensor):
        return self.fn(hidden, self.head.weight)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside a process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def unwrap(model: nn.Module) -> nn.Module:
    """The ``PreTrainedModel`` inside DDP / FSDP1 wrappers (FSDP2 shards in place: the module itself)."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def call_with_head(model: nn.Module, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], **inputs) -> Any:
    """``model(**inputs)`` with its ``lm_head`` replaced by ``fn`` for this call; returns what ``fn`` returned.

    ``fn`` gets the final (normed) hidden states of every position and the head's weight, and should return a
    tensor (the loss): FSDP attaches its backward hooks to the forward's outputs. ``model`` may be wrapped (DDP,
    FSDP1) or sharded in place (FSDP2); the call goes through the wrapper so every hook runs.
    """
    inner = unwrap(model)
    head = inner.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise ValueError("call_with_head: an lm_head with a bias is not supported (use sft.loss_head: plain)")
    inner.set_output_embeddings(_HeadCall(head, fn))
    try:
        out = model(**inputs, use_cache=False)
    finally:
        inner.set_output_embeddings(head)
    return out.logits


def vocab_size(model: nn.Module) -> int:
    """Rows of ``lm_head`` (not ``weight.shape``, which is a shard's under FSDP1)."""
    head = unwrap(model).get_output_embeddings()
    return int(getattr(head, "out_features", None) or head.weight.shape[0])


def accelerate_fsdp() -> bool:
    """Whether this process was started by ``accelerate launch`` with an FSDP config (accelerate sets the variable)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def fp32_master_weights(model: nn.Module) -> nn.Module:
    """The policy's trainable parameters in fp32 where accelerate's FSDP will not make them so.

    A bf16 hub base (Qwen2.5-7B) loads in bf16; under ``accelerate launch`` with FSDP and mixed precision (the paper
    launch) accelerate upcasts the trainable parameters to fp32 master weights. Anything else (one GPU, DDP, the CPU
    rehearsal) trained the bf16 weights themselves: an AdamW step of ~lr = 1e-5 on a weight of ~1e-2 is ~1e-3 of it,
    under half of bf16's resolution (2^-8), so most updates rounded away, silently. bf16 autocast still computes in
    bf16 (``sft.bf16``)."""
    if accelerate_fsdp():
        return model
    low = [name for name, p in model.named_parameters() if p.requires_grad and p.dtype != torch.float32]
    if low:
        log.info("training in fp32 master weights: %d parameters loaded as %s upcast", len(low),
                 model.get_parameter(low[0]).dtype)
        model.float()
    return model


def _fsdp2(model: nn.Module) -> bool:
    """Parameters held as DTensor shards: sharded in place by FSDP2's ``fully_shard``."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(model: nn.Module, accelerator=None) -> dict[str, torch.Tensor]:
    """Every weight, unsharded, on CPU, on the main process (other processes get ``{}``). Collective under FSDP:
    every process calls it.

    FSDP2 (DTensor parameters) through ``torch.distributed.checkpoint``'s full state dict, which is what
    ``accelerate`` itself does for FSDP2; FSDP1 through ``accelerator.get_state_dict`` (a ``FULL_STATE_DICT``
    gather whatever ``fsdp_state_dict_type`` says); a plain or DDP model directly.
    """
    if _fsdp2(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if accelerator is not None:
        return accelerator.get_state_dict(model)
    return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def load_gathered(target: nn.Module, model: nn.Module) -> None:
    """``target.load_state_dict`` of ``model``'s whole weights on every process (PSFT's lagged snapshot of a sharded
    policy). Collective under FSDP: every process calls it."""
    if _fsdp2(model):
        _copy_gathered(target, model)
        return
    if type(model).__name__ == "FullyShardedDataParallel":
        from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel, StateDictType

        config = FullStateDictConfig(offload_to_cpu=False, rank0_only=False)
        with FullyShardedDataParallel.state_dict_type(model, StateDictType.FULL_STATE_DICT, config):
            state = model.state_dict()
    else:
        state = unwrap(model).state_dict()
    target.load_state_dict(state)


def _copy_gathered(target: nn.Module, model: nn.Module) -> None:
    """FSDP2: each weight gathered whole and copied into ``target`` one at a time, so a process holds one full
    weight beside its shards (a full state dict at once would be a second fp32 model, ~30 GB at 7B, on every GPU).
    Every process walks the same names in the same order: each ``full_tensor()`` is a collective."""
    from torch.distributed.tensor import DTensor

    into, copied = target.state_dict(), set()
    with torch.no_grad():
        for name, value in unwrap(model).state_dict().items():  # activation checkpointing's hook gives plain names
            full = value.full_tensor() if isinstance(value, DTensor) else value
            if name not in into:
                raise KeyError(f"load_gathered: the policy's {name!r} has no counterpart in the snapshot model")
            into[name].copy_(full)
            copied.add(name)
            del full
    if missing := sorted(set(into) - copied):
        raise KeyError(f"load_gathered: the policy has no {missing[0]!r} (and {len(missing) - 1} more) to copy")


def forward_param_dtype(model: nn.Module) -> torch.dtype:
    """The dtype ``model``'s forward computes with its parameters in: under FSDP2 its mixed-precision policy's
    ``param_dtype`` (accelerate's ``mixed_precision: bf16`` keeps fp32 master shards and gathers them as bf16),
    else the parameters' own dtype."""
    inner = unwrap(model)
    get_state = getattr(inner, "_get_fsdp_state", None)  # torch's FSDPModule (fully_shard), sharded in place
    if get_state is not None:
        policy = getattr(get_state(), "_mp_policy", None)
        if getattr(policy, "param_dtype", None) is not None:
            return policy.param_dtype
    return next(p.dtype for p in inner.parameters() if p.is_floating_point())


def match_forward_dtype(target: nn.Module, model: nn.Module) -> None:
    """Cast ``target``'s floating parameters to :func:`forward_param_dtype` of ``model`` (PSFT's snapshot of a
    policy that computes in bf16 over fp32 master weights): the snapshot's forward then is the policy's, so the
    ratio π_θ/π_old is exactly 1 right after a snapshot. Buffers (rotary frequencies) are left alone, as FSDP2
    leaves them; :func:`load_gathered` keeps the dtype (``load_state_dict`` copies into the parameters)."""
    dtype = forward_param_dtype(model)
    for p in target.parameters():
        if p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)


@contextlib.contextmanager
def gathered_for_generation(model: nn.Module):
    """The model for ``generate``. FSDP1: its parameters gathered (``generate`` calls the inner module, past the
    root unit's hooks). FSDP2: each unit gathered once, at the first decode step, and kept until the end instead of
    at every step (:func:`_kept_unsharded`). Anything else: the model as it is."""
    if type(model).__name__ == "FullyShardedDataParallel":
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(model, writeback=False):
            yield unwrap(model)
    else:
        with _kept_unsharded(model):
            yield model


def _reshard_setting(module) -> tuple | None:
    """An FSDP2 unit's reshard-after-forward setting as torch 2.13 holds it: each param group's post-forward mesh
    (None: no reshard) and whether the root's own rule may still apply; None where its state reads otherwise."""
    try:
        state = module._get_fsdp_state()
        return tuple(group.post_forward_mesh_info for group in state._fsdp_param_groups), \
            state._auto_reshard_after_forward
    except AttributeError:
        return None


def _restore_reshard_setting(module, setting: tuple, root: bool) -> None:
    """Put back :func:`_reshard_setting`. A root under torch's own rule (``fully_shard`` without
    ``reshard_after_forward``, as accelerate 1.15 shards the root) gets what that rule gives at the first forward,
    which may have been the evaluation's (at step 0): no reshard after forward."""
    meshes, auto = setting
    state = module._get_fsdp_state()
    for group, mesh in zip(state._fsdp_param_groups, meshes):
        group.post_forward_mesh_info = None if root and auto else mesh
    state._auto_reshard_after_forward = auto


@contextlib.contextmanager
def _kept_unsharded(model: nn.Module):
    """FSDP2 units stay unsharded between forwards while inside, and are resharded with their setting restored after.

    A sharded unit is all-gathered at every forward; in ``generate`` that is every decode step, each moving the whole
    bf16 model to every GPU (~13 GB per GPU per token at 7.6 B over 8 GPUs) for a step that computes little: Figure
    3's evaluation at 8,192 tokens would be bound by it (arithmetic; not timed on a GPU). Kept, the units cost the
    whole bf16 model (15-16 GB per GPU) for the evaluation's duration, with training's activations freed and vLLM
    asleep (``grpo.vllm.sleep_mode``). torch documents ``set_reshard_after_forward`` for this ("False for running
    evals and set back to True for training"). Where a unit's setting cannot be read, nothing is changed (a gather
    per step, as before).
    """
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        yield
        return
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]  # the root (outermost) first
    settings = [_reshard_setting(m) for m in units]
    if not units or None in settings:
        yield
        return
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:  # the setting first: a unit stopped inside its forward (generate raised) reshards only under it
        for i, (unit, setting) in enumerate(zip(units, settings)):
            _restore_reshard_setting(unit, setting, root=i == 0)
            unit.reshard()


@contextlib.contextmanager
def trl_reference_in_every_process(needed: bool):
    """TRL's GRPOTrainer, constructed inside, loads its KL reference (``grpo.kl_coef`` > 0) whole on every process.

    TRL (1.16) loads that reference itself, after the Trainer made the process group, and shards it with
    ``fully_shard`` without a broadcast (``trl.models.utils.prepare_fsdp``). Under ``accelerate launch`` with FSDP's
    CPU-RAM-efficient loading (workflow/accelerate/fsdp.yaml) the GPU set's transformers 5.17 reads its weights on
    each node's first process only and leaves zeros on the others: a KL term against an all-zero model on those GPUs.
    Its loader runs here inside :func:`giftlab.models.weights_in_every_process` (tests/dist/grpo_reference.py).
    """
    if not needed:
        yield
        return
    import trl
    import trl.trainer.grpo_trainer as trl_grpo

    from giftlab.cli import JobFailed
    from giftlab.models import weights_in_every_process

    load = getattr(trl_grpo, "create_model_from_path", None)
    if load is None:  # a TRL that loads its reference otherwise: refuse rather than risk zeros on most GPUs
        raise JobFailed(f"trl {trl.__version__}: GRPOTrainer no longer loads its reference through "
                        "create_model_from_path; giftlab.training.sharded.trl_reference_in_every_process "
                        "needs updating for grpo.kl_coef > 0")

    def load_whole(*args, **kwargs):
        with weights_in_every_process():
            return load(*args, **kwargs)

    trl_grpo.create_model_from_path = load_whole
    try:
        yield
    finally:
        trl_grpo.create_model_from_path = load
