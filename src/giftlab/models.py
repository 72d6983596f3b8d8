"""Tiny backbones built from configs, and one loader for tiny checkpoints and real hub models."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

ARCHS = ("qwen2", "llama")


def build_tiny_model(arch: str, vocab_size: int, hidden_size: int, num_hidden_layers: int,
                     num_attention_heads: int, intermediate_size: int,
                     max_position_embeddings: int = 256, tie_word_embeddings: bool = True,
                     seed: int = 0, num_key_value_heads: int | None = None,
                     tokenizer: Any = None, pad_token_id: int = 0, eos_token_id: int = 1,
                     bos_token_id: int = 2, **config_kwargs: Any):
    """A randomly initialised ``Qwen2ForCausalLM`` / ``LlamaForCausalLM`` (fp32), seeded.

    Special-token ids come from ``tokenizer`` when given (else the char tokenizer's 0/1/2) and are
    written to both the model config and its generation config. Extra ``config_kwargs`` go to the
    HF config (e.g. ``rope_theta``); ``threads``/``source``/``pretrain`` style keys are not accepted.
    """
    import torch
    from transformers import (GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)

    if arch not in ARCHS:
        raise ValueError(f"arch: unknown architecture {arch!r} (choose from {', '.join(ARCHS)})")
    if hidden_size % num_attention_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads "
                         f"{num_attention_heads}")
    kv = num_key_value_heads or num_attention_heads
    if num_attention_heads % kv:
        raise ValueError(f"num_attention_heads {num_attention_heads} is not divisible by "
                         f"num_key_value_heads {kv}")
    if tokenizer is not None:
        pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos_token_id, bos_token_id = tokenizer.eos_token_id, tokenizer.bos_token_id
        vocab_size = max(vocab_size, len(tokenizer))
    common = dict(vocab_size=vocab_size, hidden_size=hidden_size,
                  num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                  num_key_value_heads=kv, intermediate_size=intermediate_size,
                  max_position_embeddings=max_position_embeddings,
                  tie_word_embeddings=tie_word_embeddings, pad_token_id=pad_token_id,
                  eos_token_id=eos_token_id, bos_token_id=bos_token_id, **config_kwargs)
    config = Qwen2Config(**common) if arch == "qwen2" else LlamaConfig(**common)
    torch.manual_seed(seed)
    model = (Qwen2ForCausalLM if arch == "qwen2" else LlamaForCausalLM)(config)
    model.generation_config = GenerationConfig(pad_token_id=pad_token_id, eos_token_id=eos_token_id,
                                               bos_token_id=bos_token_id)
    return model


def n_params(model) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def hub_offline() -> bool:
    """Whether the Hugging Face hub is off (HF_HUB_OFFLINE, as huggingface_hub reads it)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def hub_cache_dir() -> Path:
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE)


def hub_cached(repo_id: str) -> bool:
    """Whether a model's snapshot is in the Hugging Face cache (where an offline load looks for it)."""
    return any((hub_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "snapshots").glob("*/config.json"))


def looks_local(name: str) -> bool:
    """Not shaped like a hub id (``name`` or ``owner/name``): a filesystem path."""
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is None or name.startswith(".")


def _resolve(path_or_hub_id: str | os.PathLike, what: str) -> tuple[str, dict[str, Any]]:
    """A local directory, or a hub id to load (from the cache only when offline); else one-line error."""
    name = os.fspath(path_or_hub_id)
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser()), {}
    if looks_local(name) or Path(name).expanduser().exists():
        raise FileNotFoundError(f"{what} not found: {name} is not a directory")
    return name, ({"local_files_only": True} if hub_offline() else {})


def local_checkpoint(path_or_hub_id: str | os.PathLike) -> Path:
    """The local folder of a checkpoint: the folder itself, or a hub id's snapshot (downloaded when online, from
    the local HF cache when ``HF_HUB_OFFLINE=1``); else a one-line error naming it."""
    name, extra = _resolve(path_or_hub_id, "model")
    if not extra and Path(name).is_dir():
        return Path(name)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, **extra))
    except Exception as exc:  # noqa: BLE001 - offline, unknown, gated: one line naming it
        raise FileNotFoundError(_offline_message("model", name, exc)) from None


# The pipeline's checkpoint folders and the output (a Snakemake target) that writes each.
_OUTPUT = re.compile(r"(?:^|.*/)(models/(?:base/[^/]+|(?:sft|rl)/[^/]+/[^/]+)|results/sft/reference/[^/]+/[^/]+)(?:/|$)")


class CorruptCheckpoint(RuntimeError):
    """A checkpoint file that is torn or truncated; the message is one line naming it and how to rebuild it."""

    def __init__(self, file: str | os.PathLike, what: str):
        self.file, self.what = Path(file), what
        super().__init__(f"corrupt checkpoint {file}: {what}; {rebuild_hint(file)}")


def rebuild_hint(file: str | os.PathLike, snakemake_args: str | None = None) -> str:
    """How to rebuild the checkpoint holding ``file``: force the Snakemake output it belongs to, if it is one.
    ``snakemake_args``: the profile arguments of the run (e.g. ``--configfile config/smoke.yaml``), where known."""
    match = _OUTPUT.match(Path(file).as_posix())
    if not match:
        return "replace it with a whole copy (download or export it again)"
    # an SFT run's epochs are hard links of its training's exports (work/sft/...): damaged in place, both are
    twin = ""
    if match.group(1).startswith("models/sft/"):
        twin = (f" (should the SFT job then find its export in work/{match.group(1).removeprefix('models/')} "
                "damaged too, it says to delete that folder: the run trains again)")
    if snakemake_args is None:  # a job does not know the command it runs under
        return (f"rebuild it with `snakemake --force {match.group(1)}` and the --configfile of your run "
                f"(then rerun what you ran){twin}")
    args = f" {snakemake_args}" if snakemake_args else ""
    return f"rebuild it with `snakemake --force {match.group(1)}{args}`{twin}"


def check_weights(folder: str | os.PathLike) -> None:
    """Every ``*.safetensors`` in ``folder`` is whole: an 8-byte header length, a JSON header, and exactly the bytes
    its tensors' offsets describe; every shard an index names exists. Reads headers only. Raises
    :class:`CorruptCheckpoint` (one line: the file, what is wrong, :func:`rebuild_hint`)."""
    folder = Path(folder)

    def bad(file: Path, what: str) -> CorruptCheckpoint:
        return CorruptCheckpoint(file, what)

    for index in folder.glob("*.safetensors.index.json"):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, AttributeError) as exc:
            raise bad(index, f"not a safetensors index ({type(exc).__name__})") from None
        for shard in sorted(shards):
            if not (folder / shard).is_file():
                raise bad(folder / shard, f"missing (named by {index.name})")
    for file in sorted(folder.glob("*.safetensors")):
        check_safetensors(file)


def check_safetensors(file: str | os.PathLike) -> tuple[int, dict]:
    """One ``*.safetensors`` file is whole (see :func:`check_weights`); :class:`CorruptCheckpoint` otherwise.
    Returns its header's length and the header (tensor entries and ``__metadata__``)."""
    file = Path(file)

    def bad(what: str) -> CorruptCheckpoint:
        return CorruptCheckpoint(file, what)

    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n <= 0 or 8 + n > size:
            raise bad(f"{size} bytes cannot hold its header (a truncated or torn copy)")
        try:
            header = json.loads(fh.read(n))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise bad("its header is not safetensors JSON") from None
    if 8 + n + end != size:
        raise bad(f"{size} bytes where its header describes {8 + n + end} (truncated or torn)")
    return n, header


def load_model(path_or_hub_id: str | os.PathLike, dtype: Any = None, **kwargs: Any):
    """``AutoModelForCausalLM.from_pretrained`` for a local checkpoint dir or a hub id.

    ``dtype``: a ``torch.dtype``, a string like ``"bfloat16"``, ``"auto"`` or None: the checkpoint's own dtype
    (transformers 5 reads None as ``"auto"``: a bf16 hub base such as Qwen2.5-7B loads in bf16, the tiny bases in
    fp32). Training keeps fp32 master weights all the same: accelerate's FSDP2 with ``mixed_precision: bf16``
    upcasts the trainable parameters, and :func:`giftlab.training.sharded.fp32_master_weights` does elsewhere.
    Special-token ids missing from the generation config are filled from the model config.
    """
    import torch
    from transformers import AutoModelForCausalLM

    name, extra = _resolve(path_or_hub_id, "model")
    if not extra and Path(name).is_dir():
        check_weights(name)  # a torn copy fails here in one line, not deep inside safetensors
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, **extra, **kwargs)
    except OSError as exc:
        raise FileNotFoundError(_offline_message("model", name, exc)) from None
    gc, cfg = model.generation_config, model.config
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        if getattr(gc, key, None) is None and getattr(cfg, key, None) is not None:
            setattr(gc, key, getattr(cfg, key))
    return model


@contextlib.contextmanager
def weights_in_every_process():
    """Models loaded inside hold the checkpoint's weights in every process, for models no launcher prepares (SFT's
    frozen reference).

    Under ``accelerate launch`` with FSDP's CPU-RAM-efficient loading (workflow/accelerate/fsdp.yaml) and
    torch.distributed initialised, transformers reads the weights on each node's first process only (5.17, the GPU
    set's, leaves zeros elsewhere): accelerate then broadcasts rank 0's weights, but only into the models it prepares.
    A frozen model loaded so would hold zeros on every other GPU and, silently, give those GPUs' examples a uniform
    base. The loading is switched off inside (tests/dist/frozen_load.py).
    """
    saved = os.environ.pop("FSDP_CPU_RAM_EFFICIENT_LOADING", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = saved


def load_tokenizer(path_or_hub_id: str | os.PathLike, **kwargs: Any):
    """``AutoTokenizer.from_pretrained``; a pad token is set (to eos) when the tokenizer lacks one.

    A local dir whose tokenizer_config.json names ``PreTrainedTokenizerFast`` is loaded as exactly
    that class (never a model-specific class that would re-pre-tokenize the char vocabulary).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    name, extra = _resolve(path_or_hub_id, "tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(name, **extra, **kwargs)
        cfg_path = Path(name) / "tokenizer_config.json"
        if cfg_path.is_file():
            declared = json.loads(cfg_path.read_text()).get("tokenizer_class")
            if declared == "PreTrainedTokenizerFast" and type(tok) is not PreTrainedTokenizerFast:
                tok = PreTrainedTokenizerFast.from_pretrained(name, **kwargs)
    except OSError as exc:
        raise FileNotFoundError(_offline_message("tokenizer", name, exc)) from None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    # transformers 5 may swap in a model-specific class whose pre-tokenizer drops whitespace.
    probe = "a b\nc"
    back = tok.decode(tok(probe, add_special_tokens=False).input_ids, skip_special_tokens=True)
    if " " not in back or "\n" not in back:
        raise ValueError(f"{name}: tokenizer {type(tok).__name__} does not round-trip whitespace "
                         f"({probe!r} -> {back!r})")
    return tok


def _offline_message(what: str, name: str, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = " (HF hub is offline and it is not in the local cache)" if hub_offline() else ""
    return f"cannot load {what} {name!r}{hint}: {first}"
