"""Pretraining: resume from the last complete checkpoint, ignore incomplete ones, wipe on a
config change; and the two entry points end to end at toy size."""

from __future__ import annotations

import json
import os
import sys
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from transformers import TrainerCallback  # noqa: E402

from giftlab.models import build_tiny_model, load_model, load_tokenizer  # noqa: E402
from giftlab.tinyworld import build_tokenizer, build_world  # noqa: E402
from giftlab.training.pretrain import MARKER, pretrain  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KW = dict(max_steps=6, batch_size=4, block_size=32, lr=3e-3, warmup_ratio=0.1, min_lr_ratio=0.1,
          weight_decay=0.0, seed=0, log_every=1, save_steps=2)


class Interrupt(Exception):
    pass


class CountSteps(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


class StopAfterSave(TrainerCallback):
    """Simulates a kill right after the checkpoint at ``step`` was saved (and marked)."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Interrupt()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = build_tokenizer(tmp_path_factory.mktemp("tok"))
    docs = build_world({"seed": 1, "n_problems": 10, "pretrain_docs": 150, "n_tiny_id": 6,
                        "n_tiny_ood": 3}).corpus
    return tok, docs


def model(tok, seed=0):
    return build_tiny_model("qwen2", len(tok), 16, 1, 2, 32, tokenizer=tok, seed=seed)


def test_resume_after_interruption(tmp_path, setup):
    tok, docs = setup
    out, work = tmp_path / "out", tmp_path / "work"
    with pytest.raises(Interrupt):
        pretrain(model(tok), tok, docs, out, work, callbacks=[StopAfterSave(4)], **KW)
    assert not out.exists()
    assert (work / "checkpoint-4" / MARKER).is_file()
    count = CountSteps()
    m = pretrain(model(tok), tok, docs, out, work, callbacks=[count], **KW)
    assert m["resumed_from_step"] == 4 and m["steps"] == 6
    assert count.steps == [5, 6]                               # only the remaining steps ran
    assert [s for s, _ in m["loss_curve"]] == [1, 2, 3, 4, 5, 6]   # history restored
    assert m["tokens_seen"] == 6 * 4 * 32 and m["final_loss"] > 0
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    loaded = load_model(out)
    assert loaded.config.model_type == "qwen2"
    assert load_tokenizer(out).decode(load_tokenizer(out)("a b\nc")["input_ids"],
                                      skip_special_tokens=True) == "a b\nc"

    # The export lost (deleted, or a kill between the last checkpoint and the export): the rerun exports the
    # finished checkpoint-6 instead of training a seventh step.
    shutil.rmtree(out)
    again = CountSteps()
    m2 = pretrain(model(tok, seed=5), tok, docs, out, work, callbacks=[again], **KW)
    assert again.steps == [] and m2["steps"] == 6 and m2["resumed_from_step"] == 6
    assert m2["loss_curve"] == m["loss_curve"]
    reexported = load_model(out).state_dict()
    assert all(torch.equal(reexported[k], v) for k, v in loaded.state_dict().items())

    # an uninterrupted run lands on the same weights (deterministic, step-based)
    ref = pretrain(model(tok), tok, docs, tmp_path / "ref", tmp_path / "refwork", **KW)
    assert ref["resumed_from_step"] == 0
    a, b = loaded.state_dict(), load_model(tmp_path / "ref").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_a_finished_sharded_checkpoint_is_exported_without_another_step(tmp_path):
    """Under FSDP (the paper's GRPO jobs) a finished checkpoint used to go back through trainer.train(): where
    max_steps is not a whole number of epochs (LUFFY / ReLIFT drop the RL rows whose demonstration is too long, so
    156 steps span two epochs) the Trainer skips into the epoch and trains one more step before it checks
    max_steps: a job killed between its last checkpoint and the export came back with 157 updates. The finished
    state is loaded as the Trainer loads it (sharded weights only after prepare()) and training stops there."""
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    from giftlab.training.checkpoints import train_or_finish

    ckpt = tmp_path / "checkpoint-6"
    ckpt.mkdir()
    TrainerState(global_step=6, max_steps=6).save_to_json(str(ckpt / "trainer_state.json"))

    class ShardedTrainer:
        """What transformers' Trainer does on train(resume) under FSDP: restore the state, load the sharded weights
        after prepare(), call on_train_begin, then train the rest of the resumed epoch, checking max_steps only at
        each step's end."""

        is_fsdp_enabled = True
        is_deepspeed_enabled = False

        def __init__(self):
            self.args = SimpleNamespace(max_steps=6)
            self.callback_handler = SimpleNamespace(callbacks=[])
            self.loaded, self.trained = None, 0

        def _load_from_checkpoint(self, path, model=None):
            raise AssertionError("a sharded checkpoint loads only into the prepared model, inside train()")

        def train(self, resume_from_checkpoint=None):
            self.state = TrainerState.load_from_json(str(Path(resume_from_checkpoint) / "trainer_state.json"))
            self.state.max_steps = self.args.max_steps
            self.loaded = resume_from_checkpoint
            control = TrainerControl()
            for callback in self.callback_handler.callbacks:
                callback.on_train_begin(self.args, self.state, control)
            self.state.global_step += 1  # the step an unfinished epoch still has
            self.trained += 1

    trainer = ShardedTrainer()
    assert train_or_finish(trainer, ckpt) is False
    assert trainer.loaded == str(ckpt) and trainer.trained == 0 and trainer.state.global_step == 6
    assert trainer.callback_handler.callbacks == []  # the stop is not left behind


def test_incomplete_checkpoint_is_ignored(tmp_path, setup):
    tok, docs = setup
    work = tmp_path / "work"
    with pytest.raises(Interrupt):
        pretrain(model(tok), tok, docs, tmp_path / "out", work, callbacks=[StopAfterSave(4)], **KW)
    (work / "checkpoint-4" / MARKER).unlink()                   # as if killed mid-save
    count = CountSteps()
    m = pretrain(model(tok), tok, docs, tmp_path / "out", work, callbacks=[count], **KW)
    assert m["resumed_from_step"] == 2 and m["steps"] == 6
    assert count.steps == [3, 4, 5, 6]


def test_config_change_wipes_work_dir(tmp_path, setup):
    tok, docs = setup
    work = tmp_path / "work"
    with pytest.raises(Interrupt):
        pretrain(model(tok), tok, docs, tmp_path / "out", work, callbacks=[StopAfterSave(4)], **KW)
    m = pretrain(model(tok), tok, docs, tmp_path / "out", work, **{**KW, "lr": 1e-3})
    assert m["resumed_from_step"] == 0 and m["steps"] == 6


def test_entry_points_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import make_world
        import pretrain_base
    finally:
        sys.path.pop(0)
    world = {"seed": 3, "n_problems": 40, "pretrain_docs": 200, "n_tiny_id": 9, "n_tiny_ood": 4}
    make_world.main(["--config", json.dumps(world), "--problems", "data/problems.jsonl",
                     "--pretrain-corpus", "data/pretrain.jsonl", "--benchmarks-dir", "data/bench",
                     "--tokenizer", "data/tokenizer", "--summary", "data/world.json"])
    rows = [json.loads(x) for x in Path("data/problems.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and {"question", "final_answer", "r1_solution_1"} <= set(rows[0])
    bench = [json.loads(x) for x in Path("data/bench/tiny_ood.jsonl").read_text().splitlines()]
    assert len(bench) == 4 and Path("data/bench/tiny_id.jsonl").is_file()
    assert json.loads(Path("data/world.json").read_text())["provenance"]["seed"] == 3
    cfg = {"seed": 3, "arch": "llama", "source": "tiny", "hidden_size": 16, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 64,
           "pretrain": {"max_steps": 3, "batch_size": 4, "block_size": 32, "lr": 1e-3,
                        "log_every": 1}}
    args = ["--config", json.dumps(cfg), "--corpus", "data/pretrain.jsonl", "--tokenizer",
            "data/tokenizer", "--out", "models/base/llama", "--work", "work/llama",
            "--metrics", "results/llama.json"]
    pretrain_base.main(args)
    metrics = json.loads(Path("results/llama.json").read_text())
    assert metrics["steps"] == 3 and metrics["provenance"]["config"]["arch"] == "llama"
    assert load_model("models/base/llama").config.model_type == "llama"
    with pytest.raises(ValueError, match="hiden_size"):
        pretrain_base.main(["--config", json.dumps({**cfg, "hiden_size": 3})] + args[2:])
