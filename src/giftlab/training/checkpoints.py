"""Resumable training state shared by every trainer in the pipeline.

Trainer checkpoints (weights + optimizer + RNG + trainer state) live in a *work* directory that
is not a Snakemake output, so Snakemake never deletes them when it reruns an interrupted job. A
checkpoint counts only once :class:`CompleteMarker` has stamped it after the Trainer finished
writing it; anything else is a torn write from a killed job and is discarded.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

from transformers import TrainerCallback

from giftlab.provenance import config_hash, file_sha256

log = logging.getLogger(__name__)

MARKER = "CHECKPOINT_COMPLETE"
FINGERPRINT = "job_fingerprint.json"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


class CompleteMarker(TrainerCallback):
    """Stamp each checkpoint directory once the Trainer has fully saved it."""

    def on_save(self, args, state, control, **kwargs):
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            (ckpt / MARKER).write_text(str(state.global_step))
        return control


def last_complete_checkpoint(work_dir: str | Path) -> Path | None:
    """The newest stamped checkpoint in ``work_dir``; unstamped (torn) ones are deleted."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return None
    complete = []
    for path in work_dir.iterdir():
        match = _CKPT_RE.match(path.name)
        if not match or not path.is_dir():
            continue
        if (path / MARKER).exists():
            complete.append((int(match.group(1)), path))
        else:
            shutil.rmtree(path, ignore_errors=True)
    return max(complete)[1] if complete else None


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


def prepare_work_dir(work_dir: str | Path, job_config: Mapping[str, Any]) -> Path:
    """Create ``work_dir``; wipe it when it holds state from a different job config (include the
    job's :func:`input_fingerprint` in ``job_config``, so new inputs also start afresh)."""
    work_dir = Path(work_dir)
    fingerprint = {"config_hash": config_hash(job_config)}
    stamp = work_dir / FINGERPRINT
    if work_dir.exists():
        try:
            same = json.loads(stamp.read_text()) == fingerprint
        except (OSError, json.JSONDecodeError):
            same = False
        if not same:
            shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(fingerprint))
    return work_dir


def export_model(trainer, tokenizer, out_dir: str | Path) -> Path:
    """Save HF-format weights + tokenizer to ``out_dir`` through a temporary sibling and a rename.

    ``Trainer.save_model`` gathers sharded weights (FSDP/DeepSpeed) and writes on the main process
    only, so every process calls this; only the main process renames.
    """
    import os

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if trainer.is_world_process_zero() and tmp.exists():
        shutil.rmtree(tmp)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    trainer.accelerator.wait_for_everyone()
    return out_dir


def train_or_finish(trainer, resume: Path | None) -> bool:
    """``trainer.train`` from ``resume``, unless that checkpoint already holds the whole run (a job killed between
    its last save and the export, or an export deleted by hand). Then its weights and state are loaded instead:
    resuming a finished run would train one step past ``max_steps``. Returns whether it trained."""
    from transformers import TrainerState

    distributed = getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False)
    if resume is not None and trainer.args.max_steps > 0 and not distributed:  # sharded weights load after prepare()
        state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json"))
        if state.global_step >= trainer.args.max_steps:
            log.info("%s already holds all %d steps: exporting it without training", resume, state.global_step)
            trainer._load_from_checkpoint(str(resume))  # the loader Trainer.train() uses
            trainer.state = state
            return False
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    return True
