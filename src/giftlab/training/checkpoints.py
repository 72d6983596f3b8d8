"""Resumable training state shared by every trainer in the pipeline.

Trainer checkpoints (weights + optimizer + RNG + trainer state) live in a *work* directory that
is not a Snakemake output, so Snakemake never deletes them when it reruns an interrupted job. A
checkpoint counts only once :class:`CompleteMarker` has stamped it after the Trainer finished
writing it; anything else is a torn write from a killed job and is discarded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from transformers import TrainerCallback

from giftlab.io import write_text_atomic
from giftlab.lock import hold_work_dir_lock
from giftlab.provenance import config_hash, file_sha256, training_code_version

log = logging.getLogger(__name__)

MARKER = "CHECKPOINT_COMPLETE"
#: beside the stamp: every file of the checkpoint and its size when it was stamped, so a file torn or cut since
#: (a copy cut short, a full disk) is found before a resume reads it (:func:`last_complete_checkpoint`)
FILE_SIZES = "checkpoint_files.json"
FINGERPRINT = "job_fingerprint.json"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


class CompleteMarker(TrainerCallback):
    """Stamp each checkpoint directory once the Trainer has fully saved it.

    ``keep``: how many stamped checkpoints to keep; the older ones are deleted (by the main process) only once the
    new one is stamped. Use it instead of the Trainer's ``save_total_limit``, which deletes them inside
    ``_save_checkpoint``, before ``on_save`` stamps the new one: at ``save_total_limit=1`` a kill in between leaves
    no complete checkpoint, and the run starts again from step 0.

    Several processes: every one calls ``on_save``; they meet at a barrier first, so the stamp (the main process's)
    comes after every process has written its part, the records the callbacks before this one write included
    (GRPO's ``grading_stats.json``, which the main process writes once it has gathered every process's counts):
    a process stamping in its own ``on_save`` could stamp while the main one still wrote.
    """

    def __init__(self, keep: int | None = None):
        self.keep = keep

    def on_save(self, args, state, control, **kwargs):
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        dist = _distributed()
        if dist is not None:
            dist.barrier()
        if ckpt.is_dir() and getattr(state, "is_world_process_zero", True):
            sizes = {p.relative_to(ckpt).as_posix(): p.stat().st_size for p in sorted(ckpt.rglob("*"))
                     if p.is_file() and p.name not in (FILE_SIZES, MARKER)}
            write_text_atomic(ckpt / FILE_SIZES, json.dumps(sizes))
            write_text_atomic(ckpt / MARKER, str(state.global_step))
            if self.keep:
                older = sorted((int(m.group(1)), p) for p in Path(args.output_dir).iterdir()
                               if (m := _CKPT_RE.match(p.name)) and p.is_dir() and int(m.group(1)) < state.global_step)
                for _, path in older[:max(0, len(older) - (self.keep - 1))]:
                    shutil.rmtree(path, ignore_errors=True)
        return control


def _distributed():
    """``torch.distributed`` when initialised with more than one process, else None."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def load_location(device):
    """``torch.load``'s ``map_location`` for a state this process saved (TRL's rollout batch, ReLIFT's SFT optimiser):
    the process's device, but plain ``"cpu"`` for a CPU one. accelerate gives every CPU process of a multi-process
    launch (the rehearsal's DDP over gloo) the device ``cpu:0``, a location torch.load cannot restore a tensor to."""
    return "cpu" if getattr(device, "type", device) == "cpu" else device


def trainer_epoch(state) -> int:
    """The epoch a trainer's state is in (``state.epoch``: ``epoch + steps / steps_in_epoch``, None before the first
    step): the one whose order the next ``__iter__`` of its sampler must give."""
    return math.floor(state.epoch or 0)


def last_complete_checkpoint(work_dir: str | Path) -> Path | None:
    """The newest stamped checkpoint in ``work_dir`` whose files are all there at the sizes they were stamped with.
    Every process of a job decides alike (the same files); the main one deletes the others, unstamped (torn) ones
    and stamped ones damaged since (a warning naming the file), each renamed away first, so that a process still
    looking at it finds it gone rather than half deleted."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return None
    complete = []
    main = int(os.environ.get("RANK", 0) or 0) == 0
    for path in work_dir.iterdir():
        match = _CKPT_RE.match(path.name)
        if main and path.name.startswith(".deleting-checkpoint-"):  # a deletion a kill cut short
            shutil.rmtree(path, ignore_errors=True)
        if not match or not path.is_dir():
            continue
        damage = _damage(path) if (path / MARKER).exists() else "not stamped complete"
        if damage is None:
            complete.append((int(match.group(1)), path))
            continue
        if main and damage not in ("not stamped complete", "gone"):
            log.warning("%s: %s since it was saved: deleted, not resumed from", path, damage)
        if main:
            _remove(path)
    return max(complete)[1] if complete else None


def _remove(checkpoint: Path) -> None:
    """Delete a checkpoint folder, renamed away first (another process may be reading it: it sees it gone)."""
    doomed = checkpoint.with_name(f".deleting-{checkpoint.name}")
    try:
        os.rename(checkpoint, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _damage(checkpoint: Path) -> str | None:
    """What differs from the sizes a stamped checkpoint recorded (:data:`FILE_SIZES`; None: whole, or stamped
    before they were recorded)."""
    try:
        sizes = json.loads((checkpoint / FILE_SIZES).read_text())
    except FileNotFoundError:  # stamped before sizes were recorded; or renamed away meanwhile by the main process
        return None if (checkpoint / MARKER).exists() else "gone"
    except (OSError, ValueError):
        return f"{FILE_SIZES} unreadable"
    for name, size in sizes.items():
        file = checkpoint / name
        if not file.is_file():
            return f"{name} missing"
        if file.stat().st_size != size:
            return f"{name} is {file.stat().st_size} bytes, {size} when stamped"
    return None


def input_fingerprint(paths) -> dict[str, Any]:
    """What a job's inputs are, so resumable state from other inputs is never reused.

    Data files (small) by content; model directories and large files by name, size and mtime;
    anything that is not a local path (a hub id) by its name.
    """
    out: dict[str, Any] = {}
    for path in map(Path, paths):
        if path.is_file() and path.stat().st_size < (256 << 20):
            out[str(path)] = file_sha256(path)[:16]
        elif path.is_file():
            st = path.stat()
            out[str(path)] = [st.st_size, st.st_mtime_ns]
        elif path.is_dir():
            out[str(path)] = sorted([str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns]
                                    for f in path.rglob("*") if f.is_file())
        else:
            out[str(path)] = "not a local path"
    return out


def _stamped(stamp: Path, fingerprint: Mapping[str, Any], earlier_format: bool = False) -> bool:
    """The stamp names ``fingerprint``; with ``earlier_format``, a stamp written before stamps named the training code
    counts too when the rest agrees (a run killed before that change resumes where it was, as it would have)."""
    try:
        found = json.loads(stamp.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if earlier_format and isinstance(found, dict) and "training_code" not in found:
        return found == {k: v for k, v in fingerprint.items() if k != "training_code"}
    return found == fingerprint


def _stamp_difference(stamp: Path, fingerprint: Mapping[str, Any]) -> str:
    """Which of the stamp's entries differ from ``fingerprint``'s (the warning's reason)."""
    try:
        old = json.loads(stamp.read_text())
    except (OSError, json.JSONDecodeError):
        return "no readable stamp"
    return ", ".join(k for k in sorted({*old, *fingerprint}) if old.get(k) != fingerprint.get(k)) or "none"


#: how long a process other than the main one waits for the main one to prepare the work dir (deleting a 7-8B
#: run's stale checkpoint from a shared filesystem can take minutes)
PREPARE_WAIT_S = 3600.0


def prepare_work_dir(work_dir: str | Path, job_config: Mapping[str, Any], wait_s: float = PREPARE_WAIT_S) -> Path:
    """Create ``work_dir``; wipe it when it holds state from a different job config (include the
    job's :func:`input_fingerprint` in ``job_config``, so new inputs also start afresh).

    Under several processes (``accelerate launch`` / torchrun set ``RANK``) only the main one (rank 0) wipes and
    stamps the shared directory; the others wait until the stamp names this config (eight processes removing the
    same stale checkpoint at once would fail on the files another had just removed).

    The number of processes (``WORLD_SIZE``, where above 1) is part of the stamp: a checkpoint's per-process state
    (GRPO's buffered rollout slices, one file per rank; the RNG streams) and SFT's global batch (per-device batch x
    accumulation x processes, which fixes the steps per epoch) do not carry over to another number, so a run resumed
    on another node's GPUs starts afresh instead of training a mix of the two. So is the training code
    (:func:`giftlab.provenance.training_code_version`): after an edit to it, a forced rerun trains with the new code
    instead of resuming (or re-exporting) the old code's checkpoint; an edit to the reports keeps it resumable."""
    work_dir = Path(work_dir)
    fingerprint = {"config_hash": config_hash(job_config), "training_code": training_code_version()}
    processes = int(os.environ.get("WORLD_SIZE", 1) or 1)
    if processes > 1:  # a single process's stamp stays what it was
        fingerprint["processes"] = processes
    stamp = work_dir / FINGERPRINT
    if int(os.environ.get("RANK", 0) or 0) != 0:  # (the main process holds the folder's lock for the job)
        deadline = time.monotonic() + wait_s
        while not _stamped(stamp, fingerprint):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{work_dir}: the main process did not prepare it within {wait_s:.0f} s")
            time.sleep(0.2)
        return work_dir
    hold_work_dir_lock(work_dir, " ".join(sys.argv))  # before a wipe: another job may be training in it
    if work_dir.exists() and not _stamped(stamp, fingerprint, earlier_format=True):
        if any(_CKPT_RE.match(p.name) for p in work_dir.iterdir()):
            log.warning("%s: its checkpoints are another job config's, another number of processes' or other "
                        "training code's (%s): deleted, training starts afresh", work_dir,
                        _stamp_difference(stamp, fingerprint))
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_name(f".{stamp.name}.tmp")  # renamed into place: a waiting process never reads half of it
    tmp.write_text(json.dumps(fingerprint))
    os.replace(tmp, stamp)
    return work_dir


def export_model(trainer, tokenizer, out_dir: str | Path, dtype: str | None = None) -> Path:
    """Save HF-format weights + tokenizer to ``out_dir`` through a temporary sibling and a rename.

    Collective: every process calls it. The weights are gathered whole on the main process whatever the sharding
    (:func:`giftlab.training.sharded.full_state_dict`; ``Trainer.save_model`` writes none under FSDP's
    ``SHARDED_STATE_DICT``), optionally cast (``dtype``, e.g. ``"bfloat16"``: half the size of fp32 master weights,
    and what vLLM loads), written with ``save_pretrained``, and checked against the model class
    (:func:`verify_export`) before the rename: an export that would not load fails here, in one line.
    """
    import os

    import torch

    from giftlab.training.sharded import full_state_dict, unwrap

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    main = trainer.is_world_process_zero()
    if main and tmp.exists():
        shutil.rmtree(tmp)
    trainer.accelerator.wait_for_everyone()
    state_dict = full_state_dict(trainer.model_wrapped, trainer.accelerator)
    if main:
        model = unwrap(trainer.model)
        if dtype is not None:
            cast = getattr(torch, dtype)
            state_dict = {k: v.to(cast) if v.is_floating_point() else v for k, v in state_dict.items()}
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        if dtype is not None:  # the config says what the weights are, so loaders with dtype="auto" keep it
            config_path = tmp / "config.json"
            config = json.loads(config_path.read_text())
            config["dtype"] = config["torch_dtype"] = dtype
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        tokenizer.save_pretrained(tmp)
        verify_export(tmp, name=out_dir)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    trainer.accelerator.wait_for_everyone()
    return out_dir


def verify_export(path: str | Path, name: str | Path | None = None) -> None:
    """Raise one line unless ``path`` holds safetensors weights for every parameter of its config's model class,
    with the right shapes (read from the file headers against the class built on the meta device: no weights load).
    """
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    name = name or path
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise RuntimeError(f"export {name}: no weights written (no *.safetensors; a sharded state dict?)")
    saved = {}
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            saved.update({key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()})
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    groups: dict[int, list[str]] = {}  # tied weights (one tensor, several names) are saved once
    for key, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(key)
    expected = dict(model.state_dict().items())
    missing = [keys[0] for keys in groups.values() if not any(k in saved for k in keys)]
    if missing:
        raise RuntimeError(f"export {name}: {len(missing)} of {len(groups)} weights missing, e.g. {missing[0]}")
    wrong = [k for k, shape in saved.items() if k in expected and tuple(expected[k].shape) != shape]
    if wrong:
        raise RuntimeError(f"export {name}: {wrong[0]} has shape {saved[wrong[0]]}, "
                           f"the model class expects {tuple(expected[wrong[0]].shape)}")


class RunIntervals(TrainerCallback):
    """A resumed run saves (and logs, evaluates) at this run's intervals, not the checkpoint's: the Trainer reloads
    ``state.save_steps`` from the checkpoint's trainer_state.json after setting it from the arguments (transformers 5
    ``_init_training_state``, which only warns that they differ), so a new ``grpo.save_steps`` (a runtime key: the
    work dir keeps its checkpoint) went unused by the preempted run it was meant for."""

    def on_train_begin(self, args, state, control, **kwargs):
        state.compute_steps(args, state.max_steps)
        return control


class _Finished(Exception):
    """Raised by :class:`_StopIfFinished` once train() has loaded a checkpoint that holds every step."""


class _StopIfFinished(TrainerCallback):
    """First callback of a sharded trainer resumed from a finished checkpoint: leaves train() at ``on_train_begin``,
    after the Trainer has prepared the model and loaded the checkpoint's sharded weights into it, before any step."""

    def on_train_begin(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            raise _Finished()
        return control


def train_or_finish(trainer, resume: Path | None) -> bool:
    """``trainer.train`` from ``resume``, unless that checkpoint already holds the whole run (a job killed between
    its last save and the export, or an export deleted by hand). Then its weights and state are loaded instead:
    resuming a finished run would train one step past ``max_steps`` (unless ``max_steps`` ends an epoch). Sharded
    weights (FSDP, DeepSpeed) load only into the prepared model, so there train() loads them and
    :class:`_StopIfFinished` stops it before the first step. Returns whether it trained."""
    from transformers import TrainerState

    distributed = getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False)
    if resume is not None and trainer.args.max_steps > 0:
        state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json"))
        if state.global_step >= trainer.args.max_steps:
            log.info("%s already holds all %d steps: exporting it without training", resume, state.global_step)
            if not distributed:
                trainer._load_from_checkpoint(str(resume))  # the loader Trainer.train() uses
                trainer.state = state
                return False
            stop = _StopIfFinished()
            trainer.callback_handler.callbacks.insert(0, stop)
            try:
                trainer.train(resume_from_checkpoint=str(resume))
            except _Finished:
                return False
            finally:
                trainer.callback_handler.callbacks.remove(stop)
            raise RuntimeError(f"{resume} holds all {state.global_step} steps, yet train() ran past on_train_begin")
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    return True
