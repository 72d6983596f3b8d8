"""A training job's work dir: several processes (accelerate launch: 8 on the paper's GPU jobs), and files damaged
since they were saved (a checkpoint's, an SFT export's), found before a resume reads them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from giftlab.provenance import config_hash, training_code_version
from giftlab.training.checkpoints import FINGERPRINT, prepare_work_dir
from giftlab.training.dynamics import rewrite_rows
from helpers import CONTEXT, together

def _prepare(rank, results, work, barrier):
    os.environ["RANK"] = str(rank)  # what torchrun / accelerate launch set in each process
    barrier.wait()
    try:
        prepare_work_dir(work, {"lr": 2e-6}, wait_s=60)
        results.put((rank, None))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((rank, repr(exc)))


def test_processes_prepare_a_stale_work_dir_together(tmp_path):
    """A stale checkpoint (another job config) is wiped once, by the main process; the others wait for the new
    stamp. Every process used to rmtree it at once and some crashed on files another had removed."""
    work = tmp_path / "work"
    ckpt = work / "checkpoint-25"
    for d in range(20):
        (ckpt / f"shard{d}").mkdir(parents=True)
        for i in range(100):
            (ckpt / f"shard{d}" / f"part{i}").write_text("x")
    (work / FINGERPRINT).write_text(json.dumps({"config_hash": "another job config"}))
    assert together(_prepare, 4, work, CONTEXT.Barrier(4)) == {0: None, 1: None, 2: None, 3: None}
    assert not ckpt.exists() and sorted(p.name for p in work.iterdir()) == [FINGERPRINT]


def test_a_process_other_than_the_main_one_leaves_the_work_dir_alone(tmp_path, monkeypatch):
    work = tmp_path / "work"
    prepare_work_dir(work, {"lr": 1e-6})
    (work / "checkpoint-2").mkdir()
    monkeypatch.setenv("RANK", "1")
    prepare_work_dir(work, {"lr": 1e-6})  # the stamp is this config's: no wait
    assert (work / "checkpoint-2").is_dir()
    monkeypatch.setenv("RANK", "0")
    prepare_work_dir(work, {"lr": 2e-6})  # the main process wipes state from another config
    assert not (work / "checkpoint-2").exists()


def test_a_run_resumed_on_another_number_of_processes_starts_afresh(tmp_path, monkeypatch):
    """A checkpoint holds per-process state: GRPO's buffered rollout batch (rollouts-rank<r>.pt, each process's slices
    of per-device size), the RNG streams, and SFT's global batch (batch_size x grad_accum x processes) fixes its steps
    per epoch. Resumed on 4 processes, an 8-process GRPO checkpoint fed ranks 0-3 their old 2-completion slices and
    lost ranks 4-7's; SFT went on at global batch 64 from a step count made at 128 (epochs misnumbered)."""
    work = tmp_path / "work"
    monkeypatch.setenv("WORLD_SIZE", "8")
    prepare_work_dir(work, {"lr": 1e-6})
    (work / "checkpoint-100").mkdir()
    prepare_work_dir(work, {"lr": 1e-6})
    assert (work / "checkpoint-100").is_dir()
    monkeypatch.setenv("WORLD_SIZE", "4")  # another node's GPUs, the job config unchanged
    prepare_work_dir(work, {"lr": 1e-6})
    assert not (work / "checkpoint-100").exists()
    monkeypatch.delenv("WORLD_SIZE")  # one process: the stamp names no number of processes
    prepare_work_dir(work, {"lr": 1e-6})
    assert json.loads((work / FINGERPRINT).read_text()) == {"config_hash": config_hash({"lr": 1e-6}),
                                                            "training_code": training_code_version()}


def test_a_checkpoint_of_other_training_code_is_not_resumed(tmp_path, monkeypatch, caplog):
    """The README's `snakemake --forcerun <its metrics.json>` after an edit to an objective: the SFT job resumed from
    the old code's last checkpoint, exported the old weights and recorded the new commit. A checkpoint made by other
    training code is deleted (the warning says why); an edit to code no trainer runs (the reports) keeps it."""
    from giftlab import provenance

    work = tmp_path / "work"
    prepare_work_dir(work, {"lr": 1e-6})
    (work / "checkpoint-8").mkdir()
    package = tmp_path / "giftlab"  # a copy of the library to edit
    shutil.copytree(Path(provenance.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "__file__", str(package / "provenance.py"))

    def code_edited(rel: str) -> None:
        (package / rel).write_text((package / rel).read_text() + "\n# edited\n")
        provenance.training_code_version.cache_clear()

    # code no trainer computes with, a benchmark of one's own registered (evaluation/benchmarks.py) included
    for unrelated in ("reporting/tables.py", "plan.py", "config.py", "evaluation/benchmarks.py"):
        code_edited(unrelated)
        prepare_work_dir(work, {"lr": 1e-6})
        assert (work / "checkpoint-8").is_dir()
    code_edited("evaluation/generation.py")  # GRPO's rollouts sample with it
    with caplog.at_level("WARNING"):
        prepare_work_dir(work, {"lr": 1e-6})
    assert not (work / "checkpoint-8").exists()
    (work / "checkpoint-8").mkdir()
    code_edited("objectives/gift.py")
    prepare_work_dir(work, {"lr": 1e-6})
    assert not (work / "checkpoint-8").exists()
    assert "other training code's (training_code): deleted, training starts afresh" in caplog.text
    provenance.training_code_version.cache_clear()


def test_a_checkpoint_stamped_before_stamps_named_the_training_code_is_resumed(tmp_path):
    """A run killed before the training code joined the stamp resumes where it was (pulling the change deleted every
    checkpoint of a preempted paper run); the stamp is rewritten in the current form."""
    work = tmp_path / "work"
    (work / "checkpoint-100").mkdir(parents=True)
    (work / FINGERPRINT).write_text(json.dumps({"config_hash": config_hash({"lr": 1e-6})}))
    prepare_work_dir(work, {"lr": 1e-6})
    assert (work / "checkpoint-100").is_dir()
    assert json.loads((work / FINGERPRINT).read_text())["training_code"] == training_code_version()
    (work / FINGERPRINT).write_text(json.dumps({"config_hash": config_hash({"lr": 2e-6})}))  # another config: not
    prepare_work_dir(work, {"lr": 1e-6})
    assert not (work / "checkpoint-100").exists()


def _rewrite_log(rank, results, path, barrier):
    barrier.wait()
    try:
        for step in range(300):
            rewrite_rows(path, [{"step": s, "loss": 0.5} for s in range(step % 7)])
        results.put((rank, None))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((rank, repr(exc)))


def test_processes_rewrite_the_step_log_together(tmp_path):
    """On resume every process of a GRPO job rewrites steps.jsonl (and dynamics.jsonl) up to the checkpoint. Through
    one shared temporary name a process could rename away the file another was about to rename and crash."""
    path = tmp_path / "steps.jsonl"
    assert together(_rewrite_log, 4, path, CONTEXT.Barrier(4)) == {0: None, 1: None, 2: None, 3: None}
    assert [p.name for p in tmp_path.iterdir()] == ["steps.jsonl"]  # no temporary file left behind


def _save_checkpoint_records(rank, results, work, store):
    """One process of a 2-process GRPO job at a checkpoint: the callbacks' ``on_save`` in train_grpo's order, after the
    Trainer wrote the checkpoint. Process 0 writes the run's grading counts slowly (a large shared filesystem)."""
    import time
    from types import SimpleNamespace

    import torch.distributed as dist

    from giftlab.training import grpo
    from giftlab.training.checkpoints import MARKER, CompleteMarker

    os.environ["RANK"] = str(rank)
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
        ckpt = work / "checkpoint-4"
        ckpt.mkdir(parents=True, exist_ok=True)
        seen = {}
        if rank == 0:
            write = grpo.write_json_atomic

            def slow_write(path, payload):
                time.sleep(1.0)
                seen["stamped_before_its_counts"] = (ckpt / MARKER).exists()
                return write(path, payload)

            grpo.write_json_atomic = slow_write
        args = SimpleNamespace(output_dir=str(work))
        state = SimpleNamespace(global_step=4, is_world_process_zero=rank == 0)
        for callback in (grpo.GradingTally(lambda: {"graded": 8}, None, None), CompleteMarker(keep=1)):
            callback.on_save(args, state, None)
        dist.barrier()
        dist.destroy_process_group()
        results.put((rank, seen))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put((rank, repr(exc)))


def test_a_checkpoint_is_stamped_only_after_every_process_wrote_its_part(tmp_path):
    """GRPO's checkpoint holds the run's grading counts (grading_stats.json, process 0 writes them after gathering
    every process's). Every process stamped the checkpoint complete in its own on_save, so process 1 stamped it
    while process 0 was still writing the counts: a job killed then resumed from a 'complete' checkpoint without
    them, and its metrics.json counted the gradings of the last session only."""
    work = tmp_path / "work"
    work.mkdir()
    assert together(_save_checkpoint_records, 2, work, tmp_path / "store") == \
        {0: {"stamped_before_its_counts": False}, 1: {}}
    assert json.loads((work / "checkpoint-4" / "grading_stats.json").read_text())["grading"] == {"graded": 16}
    assert (work / "checkpoint-4" / "CHECKPOINT_COMPLETE").read_text() == "4"


def _stamped_checkpoint(work, step):
    from types import SimpleNamespace

    from giftlab.training.checkpoints import CompleteMarker

    ckpt = work / f"checkpoint-{step}"
    (ckpt / "rng").mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"w" * 100)
    (ckpt / "optimizer.pt").write_bytes(b"o" * 50)
    (ckpt / "rng" / "rng_state_0.pth").write_bytes(b"r" * 10)
    CompleteMarker().on_save(SimpleNamespace(output_dir=str(work)), SimpleNamespace(global_step=step), None)
    return ckpt


def test_a_stamped_checkpoint_damaged_since_is_not_resumed_from(tmp_path, caplog):
    """A file of a complete checkpoint cut short after its stamp (a copy cut short, a full disk, an edit): the
    resume read it and failed deep in torch (OSError: Invalid argument, no file named) at every retry. The stamp
    records every file's size; a checkpoint that no longer matches is deleted with a warning naming the file, and
    the run resumes from an older one, or starts afresh."""
    from giftlab.training.checkpoints import last_complete_checkpoint

    work = tmp_path / "work"
    older, newer = _stamped_checkpoint(work, 2), _stamped_checkpoint(work, 4)
    assert last_complete_checkpoint(work) == newer
    os.truncate(newer / "optimizer.pt", 20)
    with caplog.at_level("WARNING"):
        assert last_complete_checkpoint(work) == older
    assert "optimizer.pt is 20 bytes, 50 when stamped" in caplog.text and not newer.exists()
    (older / "rng" / "rng_state_0.pth").unlink()
    assert last_complete_checkpoint(work) is None and "rng/rng_state_0.pth missing" in caplog.text
    # another process of the job skips a damaged checkpoint too, and leaves its deletion to the main one
    other = _stamped_checkpoint(work, 8)
    os.truncate(other / "model.safetensors", 1)
    os.environ["RANK"] = "1"
    try:
        assert last_complete_checkpoint(work) is None and other.exists()
    finally:
        del os.environ["RANK"]
    assert last_complete_checkpoint(work) is None and not other.exists()
    # a checkpoint stamped before sizes were recorded is taken as it is
    legacy = _stamped_checkpoint(work, 6)
    (legacy / "checkpoint_files.json").unlink()
    assert last_complete_checkpoint(work) == legacy


def test_a_damaged_sft_export_stops_the_job_in_one_line(tmp_path):
    """An SFT run's published epochs are hard links of its exports in work/: a published file cut in place cuts the
    export too, and `snakemake --force models/sft/...` published it again, still cut (the fault-injection review).
    The job now refuses the work dir, naming the file and the folder to delete."""
    from safetensors.torch import save_file
    import torch

    from giftlab.cli import JobFailed
    from giftlab.models import rebuild_hint
    from giftlab.training.sft import check_exports

    work = tmp_path / "work" / "sft" / "qwen" / "gift-b3"
    for epoch in (1, 2):
        (work / "export" / f"epoch_{epoch}").mkdir(parents=True)
        save_file({"w": torch.zeros(64)}, str(work / "export" / f"epoch_{epoch}" / "model.safetensors"))
    check_exports(work)
    weights = work / "export" / "epoch_2" / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 16)
    with pytest.raises(JobFailed) as exc:
        check_exports(work)
    message = str(exc.value)
    assert message.startswith(f"{weights}: ") and message.endswith(f"delete {work} to train the run again")
    assert "\n" not in message
    hint = rebuild_hint("models/sft/qwen/gift-b3/epoch_2/model.safetensors")
    assert "snakemake --force models/sft/qwen/gift-b3" in hint and "work/sft/qwen/gift-b3" in hint
    assert "work/" not in rebuild_hint("models/rl/qwen/sft/model.safetensors")
