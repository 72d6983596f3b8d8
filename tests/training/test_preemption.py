"""SIGTERM / SIGUSR1 before a preemption: a complete checkpoint at the next optimiser step, a non-zero exit without
outputs, and a rerun that resumes there and ends where an uninterrupted run ends (giftlab.training.preemption).

The SFT jobs are real subprocesses of scripts/sft.py (tests/dist/preempt.py pauses one at a chosen step so the test
signals it exactly there); the multi-process case runs under torchrun (DDP over gloo) with the signal reaching one
rank only; GRPO runs in this process and signals itself.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainerCallback

from giftlab.training.checkpoints import MARKER
from giftlab.training.preemption import EXIT_CODE, Preempted, PreemptionCheckpoint
from helpers import REPO, venv_env

pytestmark = pytest.mark.slow  # scheduled early on the two workers (tests/conftest.py)

ROWS = [{"question": f"Start with {i}. Add {i % 7 + 1}. What is the result?",
         "final_answer": str(i + i % 7 + 1),
         "r1_solution_1": f"{i}+{i % 7 + 1}={i + i % 7 + 1}\n" * (1 + i % 3) + f"\\boxed{{{i + i % 7 + 1}}}"}
        for i in range(1, 25)]
# 16 training rows, 4 per optimiser step: 4 steps per epoch, 8 in all
SETTINGS = {"epochs": 2, "batch_size": 4, "lr": 1e-3, "max_length": 96, "logging_steps": 1}
LINE = "preempted at step {}: checkpoint saved, rerun resumes"


def env() -> dict[str, str]:
    return {**venv_env(), "GIFTLAB_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:16]))
    (root / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[16:]))
    return root


def sft_args(base_dir, data, root: Path, settings=None) -> list[str]:
    config = {"seed": 0, "backbone": "tiny", "run": "sft", "method": "sft", "beta": None,
              "solution_key": "r1_solution_1", "objective_params": {}, "settings": settings or SETTINGS}
    return ["--config", json.dumps(config), "--base", str(base_dir), "--train", str(data / "train.jsonl"),
            "--val", str(data / "val.jsonl"), "--out", str(root / "out" / "model"), "--work", str(root / "work"),
            "--metrics", str(root / "out" / "metrics.json"), "--tensorboard", str(root / "out" / "tensorboard"),
            "--steps", str(root / "out" / "steps.csv")]


def outputs(root: Path) -> list[Path]:
    return [root / "out" / name for name in ("model", "metrics.json", "tensorboard", "steps.csv")]


def run_sft(args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "sft.py"), *args], env=env(), capture_output=True,
                          text=True, timeout=300)


def tiny_sft(base_dir, root: Path, callbacks=(), method="sft", objective_params=None, **overrides):
    """An SFT run in this process on the tiny base (``SETTINGS`` with ``overrides``), its work and outputs under
    ``root``."""
    from giftlab.models import load_model
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.sft import SFTSettings, train_sft

    return train_sft(base_path=str(base_dir), tokenizer=build_tokenizer(), load_model=load_model,
                     train_rows=ROWS[:16], val_rows=ROWS[16:], solution_key="r1_solution_1", method=method,
                     objective_params=objective_params or {}, settings=SFTSettings(seed=0, **{**SETTINGS, **overrides}),
                     out_dir=root / "out", work_dir=root / "work", job_config={"method": method}, callbacks=callbacks)


def stamped(work: Path, step: int) -> bool:
    ckpt = work / f"checkpoint-{step}"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    return (ckpt / MARKER).exists() and state["global_step"] == step


@pytest.fixture(scope="module")
def uninterrupted(base_dir, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    proc = run_sft(sft_args(base_dir, data, root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root



def test_a_run_stopped_at_an_earlier_epoch_on_a_longer_runs_work_dir_publishes_only_its_own_steps(
        base_dir, data, tmp_path, uninterrupted):
    """settings.stop_epoch (giftlab.plan: runs read only at sft.rl_epoch) resumes a work dir of the same trajectory
    trained further (the step log goes on): the steps CSV, a `dvc plots` input, stops at the run's own last step."""
    shutil.copytree(uninterrupted / "work", tmp_path / "work")
    proc = run_sft(sft_args(base_dir, data, tmp_path, {**SETTINGS, "stop_epoch": 1}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    steps = [int(row["step"]) for row in csv.DictReader((tmp_path / "out" / "steps.csv").open())]
    assert [e["epoch"] for e in metrics["epochs"]] == [1] and max(steps) == metrics["steps"] == 4

def test_sigterm_mid_epoch_saves_exits_without_outputs_and_the_rerun_matches(base_dir, data, tmp_path,
                                                                            uninterrupted):
    args = sft_args(base_dir, data, tmp_path)
    ready = tmp_path / "ready"
    # step 5 = the first step of epoch 2 (epoch 1.25): the Trainer's epoch-end hooks must not run there
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "dist" / "preempt.py"), "sft", *args],
                            env={**env(), "PREEMPT_HOLD_STEP": "5", "PREEMPT_READY": str(ready)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not Path(f"{ready}.0").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)

    assert proc.returncode == EXIT_CODE, stderr[-3000:]
    assert stderr.count(LINE.format(5)) == 1 and "Traceback" not in stderr, stderr[-3000:]
    work = tmp_path / "work"
    assert stamped(work, 5)
    assert not any(p.exists() for p in outputs(tmp_path))  # nothing that looks complete
    assert [e["epoch"] for e in json.loads((work / "epochs.json").read_text())] == [1]  # no half epoch recorded

    rerun = run_sft(args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming from" in rerun.stderr and "checkpoint-5" in rerun.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    reference = json.loads((uninterrupted / "out" / "metrics.json").read_text())
    assert metrics["steps"] == reference["steps"] == 8
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    for got, want in zip(metrics["epochs"], reference["epochs"]):
        assert abs(got["val_loss"] - want["val_loss"]) < 1e-6, (got, want)
    steps = list(csv.DictReader((tmp_path / "out" / "steps.csv").open()))
    want = list(csv.DictReader((uninterrupted / "out" / "steps.csv").open()))
    assert [int(r["step"]) for r in steps] == [int(r["step"]) for r in want] == list(range(1, 9))
    assert all(abs(float(a["loss"]) - float(b["loss"])) < 1e-6 for a, b in zip(steps, want))
    assert any((tmp_path / "out" / "tensorboard").glob("events.out.tfevents.*"))


class SignalSelf(TrainerCallback):
    """Send this process a signal at the end of optimiser step ``step`` (as SLURM would, from outside)."""

    def __init__(self, step: int, sig=signal.SIGTERM):
        self.step, self.sig = step, sig

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            # never signal a process that has no handler: the default action would end the test run
            assert signal.getsignal(self.sig) not in (signal.SIG_DFL, None), "no preemption handler installed"
            os.kill(os.getpid(), self.sig)
            time.sleep(0.05)  # the handler runs in the main thread at the next bytecode boundary
        return control


def test_an_epoch_resumed_mid_way_records_the_train_loss_and_diagnostics_of_the_whole_epoch(base_dir, tmp_path):
    """epochs.json's train_loss (mean of the epoch's logged losses) and objective diagnostics (token sums, all-reduced
    at the epoch's end) lived in memory only: an epoch resumed after a preemption recorded those of its steps after
    the resume (epoch 2: 4.5158 against 4.5197 uninterrupted). Each process now keeps its share in the checkpoint."""
    def run(name, callbacks=()):
        return tiny_sft(base_dir, tmp_path / name, callbacks, method="gift", objective_params={"beta": 10.0})

    straight = run("straight")
    with pytest.raises(Preempted, match=LINE.format(6)):   # 4 steps per epoch: step 6 is half-way through epoch 2
        run("resumed", [SignalSelf(6)])
    resumed = run("resumed")
    assert resumed["resumed_from"].endswith("checkpoint-6")
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    for got, want in zip(resumed["epochs"], straight["epochs"]):
        assert set(got) == set(want)
        for key in set(want) - {"epoch", "step", "seconds"}:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), (got["epoch"], key)


def test_sigusr1_on_an_epoch_last_step_keeps_that_epoch_and_resumes(base_dir, tmp_path, uninterrupted):
    """In this process: the checkpoint at an epoch's last step comes after that epoch's export (the epoch-end save)."""
    def run(callbacks=()):
        return tiny_sft(base_dir, tmp_path, callbacks)

    with pytest.raises(Preempted, match=LINE.format(4)):
        run([SignalSelf(4, signal.SIGUSR1)])
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # handlers restored
    work = tmp_path / "work"
    assert stamped(work, 4) and (work / "export" / "epoch_1" / "config.json").exists()
    assert not (tmp_path / "out").exists()
    metrics = run()
    assert metrics["resumed_from"].endswith("checkpoint-4") and metrics["steps"] == 8
    reference = json.loads((uninterrupted / "out" / "metrics.json").read_text())
    for got, want in zip(metrics["epochs"], reference["epochs"]):
        assert abs(got["val_loss"] - want["val_loss"]) < 1e-6, (got, want)


def test_two_processes_stop_together_when_one_rank_is_signalled(base_dir, data, tmp_path):
    """torchrun, 2 processes (DDP over gloo): only rank 1 gets SIGTERM; both stop at the same step, the checkpoint
    holds both ranks' state and is stamped, both exit non-zero, nothing hangs and no output is written."""
    settings = {**SETTINGS, "batch_size": 2, "grad_accum": 1}  # 2 per process x 2 processes: the same global batch
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "dist" / "preempt.py"), "sft", *sft_args(base_dir, data, tmp_path, settings)]
    proc = subprocess.run(cmd, env={**env(), "ACCELERATE_USE_CPU": "1", "PREEMPT_HOLD_STEP": "3",
                                    "PREEMPT_SELF_RANK": "1"}, capture_output=True, text=True, timeout=240)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert text.count(LINE.format(3)) == 2, text[-3000:]   # one line per rank
    assert f"exitcode  : {EXIT_CODE}" in text, text[-3000:]
    work = tmp_path / "work"
    assert stamped(work, 3)
    assert {p.name for p in (work / "checkpoint-3").glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert not any(p.exists() for p in outputs(tmp_path))


GRPO = dict(max_steps=3, lr=1e-3, lr_scheduler="constant", num_generations=2, prompts_per_generation=2,
            prompts_per_update=2, temperature=1.0, max_completion_length=6, save_steps=10, grading_timeout=10)
RL_ROWS = [{"question": f"Start with {i}. Add {i % 5 + 1}. What is the result?",
            "final_answer": str(i + i % 5 + 1)} for i in range(1, 9)]


def test_grpo_sigterm_checkpoints_raises_and_the_rerun_resumes(base_dir, tmp_path, caplog):
    from giftlab.models import load_model
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.grpo import train_grpo

    def run(callbacks=()):
        return train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(),
                          rl_rows=RL_ROWS, cfg=GRPO, seed=0, out_dir=tmp_path / "model", work_dir=tmp_path / "work",
                          job_config={"grpo": GRPO}, extra_callbacks=callbacks)

    with pytest.raises(Preempted, match=LINE.format(1)):  # save_steps 10: this checkpoint is the signal's
        run([SignalSelf(1)])
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert stamped(tmp_path / "work", 1) and not (tmp_path / "model").exists()
    with caplog.at_level(logging.INFO, logger="giftlab.training.grpo"):
        metrics = run()
    assert metrics["resumed_from"].endswith("checkpoint-1") and metrics["steps"] == 3
    assert any(r.getMessage().startswith("resuming from ") and r.getMessage().endswith("checkpoint-1")
               for r in caplog.records)  # a requeued job's log says it resumed, as SFT's does
    assert sorted({row["step"] for row in metrics["log"] if "loss" in row}) == [1, 2, 3]
    assert (tmp_path / "model" / "config.json").exists()


class Killed(Exception):
    """A SIGKILL where it hurts: after the Trainer wrote the newest checkpoint, before it was stamped complete."""


def test_grpo_killed_before_its_newest_checkpoint_is_stamped_resumes_from_the_one_before(base_dir, tmp_path,
                                                                                          monkeypatch):
    # GRPO kept one checkpoint (save_total_limit 1): the Trainer deleted the stamped checkpoint-1 inside
    # _save_checkpoint, before CompleteMarker stamped checkpoint-2 (after the rollout files and a barrier). A kill in
    # between (a preemption's save running into the grace period's SIGKILL) left no complete checkpoint: the rerun
    # discarded the unstamped one and trained the whole run again from step 0.
    from giftlab.models import load_model
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.checkpoints import CompleteMarker
    from giftlab.training.grpo import train_grpo

    cfg = dict(GRPO, save_steps=1)
    stamp = CompleteMarker.on_save

    def killed_before_stamping_2(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise Killed()
        return stamp(self, args, state, control, **kwargs)

    def run():
        return train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(),
                          rl_rows=RL_ROWS, cfg=cfg, seed=0, out_dir=tmp_path / "model", work_dir=tmp_path / "work",
                          job_config={"grpo": cfg})

    monkeypatch.setattr(CompleteMarker, "on_save", killed_before_stamping_2)
    with pytest.raises(Killed):
        run()
    monkeypatch.undo()
    work = tmp_path / "work"
    assert stamped(work, 1) and not stamped(work, 2)
    metrics = run()
    assert metrics["resumed_from"].endswith("checkpoint-1") and metrics["steps"] == 3
    # still one complete checkpoint kept at a time: the older ones go once the newer is stamped
    assert sorted(p.name for p in work.glob("checkpoint-*")) == ["checkpoint-3"]


def train_prompts(spy_log):
    """A spy on TRL's loss: (optimiser step, sorted prompt ids) of every micro-batch it trains."""
    from trl import GRPOTrainer

    original = GRPOTrainer._compute_loss

    def spy(self, model, inputs):
        prompts = self.processing_class.batch_decode(inputs["prompt_ids"], skip_special_tokens=True)
        spy_log.append((self.state.global_step + 1, sorted(p.split(".")[0] for p in prompts)))
        return original(self, model, inputs)

    return spy


def grpo_in(root, base_dir, cfg, callbacks=()):
    """A plain GRPO run on RL_ROWS with its model and work dir under ``root``."""
    from giftlab.models import load_model
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.grpo import train_grpo

    return train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(), rl_rows=RL_ROWS,
                      cfg=cfg, seed=0, out_dir=root / "model", work_dir=root / "work", job_config={"grpo": cfg},
                      extra_callbacks=callbacks)


def test_grpo_resumed_between_the_updates_of_a_rollout_batch_trains_what_an_uninterrupted_run_trains(
        base_dir, tmp_path, monkeypatch):
    # 4 prompts per rollout batch, 2 per update: checkpoint-1 falls inside a batch. TRL kept its place in the batch
    # and the batch itself in memory only: the rerun generated that batch again and trained it from its first half,
    # every later update straddling two batches (some prompts twice, others never).
    import torch
    from safetensors.torch import load_file
    from trl import GRPOTrainer

    from giftlab.training.grpo import MathReward

    cfg = dict(GRPO, max_steps=4, prompts_per_generation=4, save_steps=100)
    trained: list = []
    monkeypatch.setattr(GRPOTrainer, "_compute_loss", train_prompts(trained))
    # rewards that differ within a group, a function of the completion: the random base solves nothing, and rewards
    # all 0 leave every advantage 0, no update at all, and two runs' weights equal whatever they trained
    monkeypatch.setattr(MathReward, "__call__", lambda self, prompts, completions, final_answer, **_:
                        [float(len(c) % 2) for c in completions])

    def run(name, callbacks=()):
        return grpo_in(tmp_path / name, base_dir, cfg, callbacks)

    straight = run("straight")
    uninterrupted, trained[:] = list(trained), []
    with pytest.raises(Preempted, match=LINE.format(1)):
        run("resumed", [SignalSelf(1)])
    assert (tmp_path / "resumed" / "work" / "checkpoint-1" / "rollouts-rank0.pt").is_file()
    resumed = run("resumed")
    assert resumed["resumed_from"].endswith("checkpoint-1") and resumed["steps"] == straight["steps"] == 4
    assert trained == uninterrupted
    assert [r["loss"] for r in resumed["log"] if "loss" in r] == [r["loss"] for r in straight["log"] if "loss" in r]
    weights = [load_file(tmp_path / name / "model" / "model.safetensors") for name in ("straight", "resumed")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    base = load_file(base_dir / "model.safetensors")  # ... and they trained: the weights moved from the base
    assert any(not torch.equal(base[k], weights[0][k]) for k in base if k in weights[0])
    assert all(base[k].dtype == weights[0][k].dtype for k in base if k in weights[0])


def test_a_cpu_process_of_several_restores_its_rollout_batch(tmp_path):
    """accelerate 1.15 gives every CPU process of a multi-process launch (the rehearsal's DDP over gloo) the device
    ``cpu:0`` (measured under ``torchrun --nproc_per_node 2``), and torch.load(map_location=cpu:0) refuses any saved
    tensor ("don't know how to restore data location"): every resume of such a GRPO, LUFFY or ReLIFT run stopped
    at a checkpoint saved inside a rollout batch."""
    import torch

    from giftlab.training.rollout_state import FILE, ResumableRollouts

    class Trainer(ResumableRollouts):
        accelerator = SimpleNamespace(process_index=0, device=torch.device("cpu", 0))
        state = SimpleNamespace(global_step=1)
        args = SimpleNamespace(gradient_accumulation_steps=2)

        def __init__(self):
            pass

    class Base:
        def _load_optimizer_and_scheduler(self, checkpoint):
            pass

    Trainer = type("Trainer", (Trainer, Base), {})
    batch = [{"completion_ids": torch.arange(6).view(2, 3), "is_expert": torch.tensor([False, True])}]
    torch.save({"step": 2, "buffered_inputs": batch}, tmp_path / FILE.format(rank=0))
    trainer = Trainer()
    trainer._load_optimizer_and_scheduler(str(tmp_path))
    assert trainer._step == 2 and all(torch.equal(trainer._buffered_inputs[0][k], v) for k, v in batch[0].items())


# ------------------------------------------------------------------ the callback alone


def state(step, epoch=None, max_steps=8):
    return SimpleNamespace(global_step=step, epoch=epoch, is_world_process_zero=True, max_steps=max_steps)


def control():
    return SimpleNamespace(should_save=False, should_training_stop=False)


def test_callback_stops_at_the_step_after_the_signal_and_stamps_before_raising(tmp_path):
    cb = PreemptionCheckpoint()
    args = SimpleNamespace(output_dir=str(tmp_path), save_strategy="steps", device="cpu")
    c = cb.on_step_end(args, state(3, 0.75), control())
    assert not c.should_save and not c.should_training_stop  # no signal: nothing changes
    cb.on_save(args, state(3), c)                              # an ordinary save: no raise
    cb.install()
    try:
        assert signal.getsignal(signal.SIGTERM) == cb._handle  # never signal pytest without the handler
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert cb.requested == signal.SIGTERM
        c = cb.on_step_end(args, state(4, 1.0), control())
        assert c.should_save and c.should_training_stop and cb.stop_step == 4
        (tmp_path / "checkpoint-4").mkdir()
        with pytest.raises(Preempted) as err:
            cb.on_save(args, state(4), c)
        assert err.value.step == 4 and (tmp_path / "checkpoint-4" / MARKER).exists()
    finally:
        cb.uninstall()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_callback_leaves_an_epochs_last_step_to_the_epoch_end_save():
    cb = PreemptionCheckpoint()
    cb.requested = signal.SIGTERM
    args = SimpleNamespace(output_dir="unused", save_strategy="epoch", device="cpu")
    c = cb.on_step_end(args, state(4, 1.0), control())
    assert c.should_training_stop and not c.should_save      # the epoch-end save follows the epoch's export
    cb = PreemptionCheckpoint()
    cb.requested = signal.SIGTERM
    c = cb.on_step_end(args, state(5, 1.25), control())
    assert c.should_training_stop and c.should_save          # mid-epoch: save at this step


def test_grpo_resumed_in_a_later_epoch_trains_the_prompts_an_uninterrupted_run_trains(base_dir, tmp_path, monkeypatch):
    # 8 prompts, 2 per step: 4 steps an epoch, 7 in all, preempted at step 5 (epoch 2). TRL's RepeatSampler draws each
    # epoch's order from a generator seeded once when built; the Trainer builds a new one on resume and skips batches
    # of the resumed epoch only, so the rerun trained epoch 1's order from the checkpoint's position on.
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    cfg = dict(GRPO, max_steps=7, save_steps=100)
    trained: list = []
    monkeypatch.setattr(GRPOTrainer, "_compute_loss", train_prompts(trained))

    def run(name, callbacks=()):
        return grpo_in(tmp_path / name, base_dir, cfg, callbacks)

    run("straight")
    uninterrupted, trained[:] = list(trained), []
    # TRL's own order, unchanged: two passes of one RepeatSampler (2 prompts x 2 completions per step)
    sampler = RepeatSampler(list(range(8)), mini_repeat_count=2, batch_size=2, seed=0)
    order = [i for _ in range(2) for i in sampler]
    want = [(s + 1, sorted(f"Start with {i + 1}" for i in order[4 * s:4 * s + 4])) for s in range(7)]
    assert uninterrupted == want
    with pytest.raises(Preempted, match=LINE.format(5)):
        run("resumed", [SignalSelf(5)])
    before, trained[:] = list(trained), []
    resumed = run("resumed")
    assert resumed["resumed_from"].endswith("checkpoint-5") and resumed["steps"] == 7
    assert before + trained == uninterrupted


def test_the_resumed_epochs_order_reaches_the_sampler_under_several_processes():
    # Under accelerate launch a resumed epoch's dataloader is SkipBatchSampler > BatchSamplerShard > BatchSampler >
    # sampler, and DataLoaderShard.set_epoch looks two levels down only: the order must not depend on set_epoch.
    from types import SimpleNamespace

    from accelerate.data_loader import BatchSamplerShard, DataLoaderShard, skip_first_batches
    from torch.utils.data import BatchSampler
    from trl.trainer.utils import RepeatSampler

    from giftlab.training.checkpoints import trainer_epoch
    from giftlab.training.rollout_state import EpochOrder

    def repeat():
        return RepeatSampler(list(range(8)), mini_repeat_count=2, batch_size=2, seed=0)

    straight = repeat()
    epochs = [list(straight) for _ in range(3)]  # an uninterrupted run: one sampler, three epochs
    state = SimpleNamespace(epoch=2.25)  # resumed a quarter into epoch 3 (index 2)
    for rank in (0, 1):
        order = EpochOrder(repeat(), lambda: trainer_epoch(state))
        shard = BatchSamplerShard(BatchSampler(order, batch_size=2, drop_last=False), num_processes=2,
                                  process_index=rank)
        loader = skip_first_batches(DataLoaderShard(list(range(8)), batch_sampler=shard), 1)
        loader.set_epoch(2)
        got = [int(i) for batch in loader for i in batch]
        want = [i for b in range(1, len(epochs[2]) // 4) for i in epochs[2][4 * b + 2 * rank:4 * b + 2 * rank + 2]]
        assert got == want, (rank, got, want)


def test_a_grpo_run_resumed_with_a_new_checkpoint_interval_checkpoints_at_it(base_dir, tmp_path):
    # grpo.save_steps is a runtime key: a preempted run rerun with a shorter interval keeps its checkpoint (the work
    # dir's fingerprint leaves it out), but the Trainer restores state.save_steps from the checkpoint's
    # trainer_state.json (transformers only warns that args and state differ), so the rerun went on saving at the
    # old interval: here at step 4 only instead of 3 and 4
    from giftlab.models import load_model
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.grpo import train_grpo
    from giftlab.training.tracking import without_tracking

    saved: list[int] = []

    class Saves(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            saved.append(state.global_step)

    class StopAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise KeyboardInterrupt("simulated kill")

    def run(save_steps, callbacks):
        cfg = dict(GRPO, max_steps=4, save_steps=save_steps)
        return train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(),
                          rl_rows=RL_ROWS, cfg=cfg, seed=0, out_dir=tmp_path / "model", work_dir=tmp_path / "work",
                          job_config=without_tracking({"grpo": cfg}), extra_callbacks=callbacks)

    with pytest.raises(KeyboardInterrupt):
        run(2, [StopAfterSave()])
    resumed = run(1, [Saves()])
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps"] == 4
    assert saved == [3, 4]


def test_grpo_preempted_at_its_last_step_keeps_the_final_rl_dynamics_row(base_dir, tmp_path):
    """The RL dynamics' last row (the final policy's pass@1, Figure 3's end point) was measured in on_train_end,
    after the last checkpoint: a run preempted at its last step, or killed during that evaluation or the export,
    finished from that checkpoint without training, so the row was never measured (max_steps 3, eval_every 10:
    steps [0] against [0, 3] uninterrupted; the smoke profile's 2 steps and eval_every 10 likewise)."""
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": f"p{i}", "prompt": r["question"], "gold": r["final_answer"],
                                         "kind": "math"}) + "\n" for i, r in enumerate(RL_ROWS)))
    cfg = dict(GRPO, eval_every=10, eval_problems=4, eval_samples=2, eval_max_new_tokens=6)

    def run(name, callbacks=()):
        from giftlab.models import load_model
        from giftlab.tinyworld.tokenizer import build_tokenizer
        from giftlab.training.grpo import train_grpo

        return train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(),
                          rl_rows=RL_ROWS, cfg=cfg, seed=0, out_dir=tmp_path / name / "model",
                          work_dir=tmp_path / name / "work", job_config={"grpo": cfg}, extra_callbacks=callbacks,
                          dynamics_benchmark=str(bench))

    straight = run("straight")
    with pytest.raises(Preempted, match=LINE.format(3)):
        run("resumed", [SignalSelf(3)])
    resumed = run("resumed")
    assert resumed["resumed_from"].endswith("checkpoint-3")

    def rows(metrics):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in metrics["dynamics"]]

    assert [row["step"] for row in straight["dynamics"]] == [0, 3]
    assert rows(resumed) == rows(straight)
    assert resumed["dynamics_grading"] == straight["dynamics_grading"]


def test_grpo_finished_from_its_last_checkpoint_logs_what_an_uninterrupted_run_logs(base_dir, tmp_path):
    """metrics.json's step log held the Trainer's end-of-training summary (this train() call's runtime and its mean
    loss over this call's steps only) as a last row: a run resumed from its last checkpoint (preempted at its last
    step, killed in the export) never trains again and had no such row; one resumed mid-run had the mean of its
    later steps. The log keeps optimiser steps only, as SFT's does."""
    import re

    def run(name, callbacks=()):
        return grpo_in(tmp_path / name, base_dir, GRPO, callbacks)

    def steps(metrics):  # wall-clock fields aside (benchmarks/faults.py leaves them out too)
        return [{k: v for k, v in row.items() if not re.search(r"_time$|runtime|per_second", k)}
                for row in metrics["log"]]

    straight = run("straight")
    with pytest.raises(Preempted, match=LINE.format(3)):
        run("resumed", [SignalSelf(3)])
    resumed = run("resumed")
    assert resumed["resumed_from"].endswith("checkpoint-3")
    assert steps(resumed) == steps(straight)
    assert [row["step"] for row in straight["log"]] == [1, 2, 3]


def test_sft_preempted_between_two_logged_steps_logs_what_an_uninterrupted_run_logs(base_dir, tmp_path):
    """A mid-epoch preemption's checkpoint falls between two logged steps where the logging interval is above 1 (the
    paper's: sft.logging_steps 10 -> 6, a divisor of 78 steps an epoch). The Trainer's loss summed since the last log
    lived in memory only: the steps before the signal were never logged, the first row after the resume averaged
    its later steps only, and the epoch's train_loss (the mean of its logged losses) moved."""
    from giftlab.training.tracking import read_step_rows

    def run(name, callbacks=()):
        metrics = tiny_sft(base_dir, tmp_path / name, callbacks, logging_steps=2)  # 4 steps an epoch: logged at 2..8
        rows = read_step_rows(tmp_path / name / "work" / "steps.jsonl")
        return metrics, [(row["step"], row["loss"]) for row in rows]

    straight, straight_rows = run("straight")
    with pytest.raises(Preempted, match=LINE.format(5)):
        run("resumed", [SignalSelf(5)])
    resumed, resumed_rows = run("resumed")
    assert resumed["resumed_from"].endswith("checkpoint-5")
    assert [step for step, _ in straight_rows] == [2, 4, 6, 8]
    assert [step for step, _ in resumed_rows] == [2, 4, 6, 8]
    assert [loss for _, loss in resumed_rows] == [loss for _, loss in straight_rows]
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in straight["epochs"]]


class SignalAtEpochEnd(TrainerCallback):
    """SIGTERM during an epoch's end (its validation and export, minutes at paper scale), after the last step's end."""

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.global_step == 4:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        return control


def test_a_signal_during_the_epoch_end_stops_at_that_epochs_checkpoint(base_dir, tmp_path, uninterrupted):
    """The stop was decided at optimiser step ends only: a signal that came during the epoch's validation and export
    (or during a checkpoint's save) let the epoch-end checkpoint be saved, trained one more step and saved a second
    checkpoint (93 GB at paper scale) inside the grace period. The checkpoint being saved is where it stops."""
    saved: list[int] = []

    class Saves(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            saved.append(state.global_step)

    def run(callbacks=()):
        return tiny_sft(base_dir, tmp_path, callbacks)

    with pytest.raises(Preempted, match=LINE.format(4)):
        run([Saves(), SignalAtEpochEnd()])
    assert saved == [4] and stamped(tmp_path / "work", 4)
    metrics = run()
    assert metrics["resumed_from"].endswith("checkpoint-4") and metrics["steps"] == 8
    reference = json.loads((uninterrupted / "out" / "metrics.json").read_text())
    for got, want in zip(metrics["epochs"], reference["epochs"]):
        assert abs(got["val_loss"] - want["val_loss"]) < 1e-6, (got, want)


def test_a_signal_during_a_save_stops_there_unless_it_is_the_last(tmp_path):
    """Saves after the signal: a run's middle one is where it stops; its last one lets the job write its outputs."""
    args = SimpleNamespace(output_dir=str(tmp_path), save_strategy="steps", device="cpu")
    for step, stops in ((4, True), (8, False)):
        cb = PreemptionCheckpoint()
        cb.requested = signal.SIGTERM   # came after this step's end (on_step_end saw none)
        (tmp_path / f"checkpoint-{step}").mkdir()
        c = control()
        if stops:
            with pytest.raises(Preempted):
                cb.on_save(args, state(step), c)
            assert c.should_training_stop and (tmp_path / f"checkpoint-{step}" / MARKER).exists()
        else:
            assert cb.on_save(args, state(step), c) is c and not c.should_training_stop
