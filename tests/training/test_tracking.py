"""Experiment tracking (giftlab.training.tracking): TensorBoard by default, W&B / MLflow only when asked for (and
then a missing package fails before training, in one line naming the key); the TensorBoard events survive a resume
with each step shown once; per-step curves for `dvc plots`."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import TrainerCallback

from giftlab.cli import ConfigError
from giftlab.config import deep_merge, load_config, validate_config
from giftlab.training.tracking import (GRPO_FIELDS, SFT_FIELDS, TRACKERS, plot_rows, publish, read_step_rows,
                                       resolve_report_to, steps_csv, without_tracking)
from helpers import REPO, venv_env

ROWS = [{"question": f"Start with {i}. Add {i % 7 + 1}. What is the result?",
         "final_answer": str(i + i % 7 + 1),
         "r1_solution_1": f"{i}+{i % 7 + 1}={i + i % 7 + 1}\n" * (1 + i % 3) + f"\\boxed{{{i + i % 7 + 1}}}"}
        for i in range(1, 25)]
SETTINGS = {"epochs": 2, "batch_size": 4, "lr": 1e-3, "max_length": 96, "logging_steps": 1, "seed": 0}
MISSING = [name for name, package in TRACKERS.items() if importlib.util.find_spec(package) is None]


# ------------------------------------------------------------------ which trackers


def test_tensorboard_is_the_default_and_names_are_checked():
    assert resolve_report_to(None, "sft.report_to") == ["tensorboard"]
    assert resolve_report_to([], "sft.report_to") == []
    with pytest.raises(ConfigError, match=r"^config error: grpo\.report_to: unknown tracker 'comet'") as err:
        resolve_report_to(["tensorboard", "comet"], "grpo.report_to")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_tracker_without_its_package_fails_in_one_line_naming_the_key(name, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda pkg, *a: None if pkg == name else real(pkg, *a))
    with pytest.raises(ConfigError) as err:
        resolve_report_to(["tensorboard", name], "sft.report_to")
    message = str(err.value)
    assert message.startswith("config error: sft.report_to:") and name in message and "\n" not in message
    assert name not in sys.modules  # looked up, never imported


def test_sft_settings_and_grpo_arguments_carry_the_trackers(tmp_path):
    from giftlab.training.grpo import grpo_arguments
    from giftlab.training.sft import SFTSettings, training_arguments

    settings = SFTSettings(**SETTINGS)
    assert settings.report_to == ["tensorboard"]
    assert training_arguments(settings, tmp_path, steps_per_epoch=4).report_to == ["tensorboard"]
    assert SFTSettings(**SETTINGS, report_to=[]).report_to == []
    cfg = dict(max_steps=2, lr=1e-3, num_generations=2, prompts_per_generation=2, prompts_per_update=2,
               max_completion_length=6)
    assert grpo_arguments(cfg, tmp_path, seed=0)["report_to"] == ["tensorboard"]
    with pytest.raises(ConfigError, match=r"grpo\.report_to"):
        grpo_arguments({**cfg, "report_to": ["tensorbord"]}, tmp_path, seed=0)
    assert "wandb" not in sys.modules and "mlflow" not in sys.modules


@pytest.mark.parametrize("section", ["sft", "grpo"])
def test_the_schema_names_a_bad_tracker(section):
    config = deep_merge(load_config(REPO / "params.yaml"), {section: {"report_to": ["tensorboard", "neptune"]}})
    with pytest.raises(ConfigError, match=rf"{section}\.report_to"):
        validate_config(config)
    validate_config(deep_merge(load_config(REPO / "params.yaml"), {section: {"report_to": ["wandb", "mlflow"]}}))


@pytest.mark.skipif(not MISSING, reason="wandb and mlflow are both installed")
@pytest.mark.parametrize("script", ["sft", "grpo"])
def test_the_job_stops_before_training_when_the_tracker_is_not_installed(script, tmp_path, capsys):
    """The real entry point, in this process: exit 1 with one line, before any data, model or work dir."""
    import runpy

    from giftlab import cli

    name = MISSING[0]
    if script == "sft":
        config = {"seed": 0, "backbone": "tiny", "run": "sft", "method": "sft", "beta": None,
                  "solution_key": "r1_solution_1", "objective_params": {},
                  "settings": {**{k: v for k, v in SETTINGS.items() if k != "seed"}, "report_to": [name]}}
        argv = ["--base", "missing-base", "--train", "missing.jsonl", "--val", "missing.jsonl"]
    else:
        config = {"seed": 0, "backbone": "tiny", "run": "sft", "grpo": {"max_steps": 2, "report_to": [name]}}
        argv = ["--init", "missing-base", "--rl", "missing.jsonl"]
    argv = ["--config", json.dumps(config), *argv, "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
            "--metrics", str(tmp_path / "metrics.json")]
    main = runpy.run_path(str(REPO / "scripts" / f"{script}.py"))["main"]
    with pytest.raises(SystemExit) as exit_:
        cli.run(main, argv)
    assert exit_.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [err[-1]] and f"{script if script == 'sft' else 'grpo'}.report_to" in err[-1] and name in err[-1]
    assert not (tmp_path / "work").exists()


def test_switching_trackers_keeps_the_resumable_state():
    job = {"seed": 0, "settings": {"lr": 1.0, "report_to": ["wandb"]}, "grpo": {"lr": 2.0, "report_to": []}}
    assert without_tracking(job) == {"seed": 0, "settings": {"lr": 1.0}, "grpo": {"lr": 2.0}}
    assert without_tracking({"seed": 0}) == {"seed": 0}


def test_a_new_checkpoint_interval_keeps_the_resumable_state(tmp_path):
    # grpo.save_steps is a runtime key (giftlab.runtime_keys.RUNTIME_KEYS: "checkpointing more often reruns no finished
    # job"), yet it stayed in the work dir's fingerprint: a GRPO run preempted at step 100 and rerun with a shorter
    # interval wiped its checkpoint (93 GB at 7B) and trained again from step 0
    from giftlab.training.checkpoints import prepare_work_dir

    job = {"seed": 0, "grpo": {"lr": 2.0, "save_steps": 25, "report_to": ["tensorboard"]}}
    work = prepare_work_dir(tmp_path / "work", without_tracking(job))
    (work / "checkpoint-100").mkdir()
    rerun = {**job, "grpo": {**job["grpo"], "save_steps": 5, "report_to": []}}
    prepare_work_dir(tmp_path / "work", without_tracking(rerun))
    assert (work / "checkpoint-100").is_dir()
    prepare_work_dir(tmp_path / "work", without_tracking({**job, "grpo": {**job["grpo"], "lr": 3.0}}))
    assert not (work / "checkpoint-100").exists()  # a setting that changes the result still starts afresh


# ------------------------------------------------------------------ events across a kill and a resume


class KillAfterLog(TrainerCallback):
    """A hard kill (no handler runs) right after step ``step`` was logged, before its checkpoint."""

    def __init__(self, step):
        self.step = step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step == self.step and logs and "loss" in logs:
            raise KeyboardInterrupt("simulated kill -9")


def scalars(log_dir: Path, tag: str = "train/loss") -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_a_killed_and_resumed_run_shows_each_step_once(base_dir, tmp_path):
    from giftlab.models import load_model
    from giftlab.tinyworld.tokenizer import build_tokenizer
    from giftlab.training.sft import SFTSettings, train_sft

    def run(root, callbacks=()):
        return train_sft(base_path=str(base_dir), tokenizer=build_tokenizer(), load_model=load_model,
                         train_rows=ROWS[:16], val_rows=ROWS[16:], solution_key="r1_solution_1", method="sft",
                         objective_params={}, settings=SFTSettings(**SETTINGS), out_dir=root / "out",
                         work_dir=root / "work", job_config={"method": "sft"}, callbacks=callbacks)

    run(tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "a", [KillAfterLog(6)])  # checkpoint-4 (epoch 1) is the last complete one; 5 and 6 logged
    assert [s for s, _ in scalars(tmp_path / "a" / "work" / "tensorboard")] == [1, 2, 3, 4, 5, 6]
    assert run(tmp_path / "a")["resumed_from"].endswith("checkpoint-4")

    got, want = scalars(tmp_path / "a" / "work" / "tensorboard"), scalars(tmp_path / "ref" / "work" / "tensorboard")
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, 9))  # 5 and 6 once: the rerun's
    assert all(abs(a - b) < 1e-6 for (_, a), (_, b) in zip(got, want))
    rows = read_step_rows(tmp_path / "a" / "work" / "steps.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 9))
    ref = plot_rows(read_step_rows(tmp_path / "ref" / "work" / "steps.jsonl"))
    assert [r["step"] for r in ref] == list(range(1, 9))
    assert set(ref[0]) == {"step", "epoch", "loss", "lr", "grad_norm"}
    assert all(abs(a["loss"] - b["loss"]) < 1e-6 for a, b in zip(plot_rows(rows), ref))


def test_publish_renames_complete_outputs_into_place(tmp_path):
    src = tmp_path / "work" / "tensorboard"
    src.mkdir(parents=True)
    (src / "events.out.tfevents.1").write_bytes(b"x")
    out = tmp_path / "results" / "tensorboard"
    out.mkdir(parents=True)
    (out / "stale").write_text("from an older run")
    publish(src, out, [{"step": 1, "epoch": 0.5, "loss": 0.5, "lr": 1e-3, "grad_norm": None}],
            tmp_path / "results" / "steps.csv")
    assert sorted(p.name for p in out.iterdir()) == ["events.out.tfevents.1"]
    assert (tmp_path / "results" / "steps.csv").read_text() == "step,epoch,loss,lr,grad_norm\n1,0.5,0.5,0.001,\n"
    assert not list(tmp_path.glob("results/.*tmp*"))
    publish(tmp_path / "nothing", tmp_path / "empty", [], None)  # report_to: [] -> an empty directory
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())


def test_grpo_plot_rows_keep_the_rl_statistics():
    log = [{"step": 1, "loss": 0.0, "reward": 0.25, "kl": 0.0, "completions/mean_length": 6.0, "epoch": 0.5,
            "learning_rate": 1e-3, "grad_norm": 0.1, "entropy": 3.0, "reward_std": 0.4},
           {"step": 2, "train_runtime": 1.0, "train_loss": 0.0}]  # the end-of-training summary: not a step
    assert plot_rows(log, GRPO_FIELDS) == [{"step": 1, "epoch": 0.5, "loss": 0.0, "lr": 1e-3, "grad_norm": 0.1,
                                            "reward": 0.25, "reward_std": 0.4, "kl": 0.0, "entropy": 3.0,
                                            "mean_length": 6.0}]


# ------------------------------------------------------------------ dvc plots


def test_dvc_plots_show_draws_every_runs_curve(tmp_path):
    """The dvc.yaml plot definitions (directories of per-run step files) render one plot per run."""
    env = {**venv_env(), "DVC_NO_ANALYTICS": "1"}
    bin_dir = Path(sys.executable).parent
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(bin_dir / "dvc"), "init", "-q"], cwd=tmp_path, check=True, env=env)
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    for stage, run in (("sft", "sft"), ("sft", "gift-b3"), ("rl", "sft")):
        path = tmp_path / "results" / "steps" / stage / "qwen" / f"{run}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = GRPO_FIELDS if stage == "rl" else SFT_FIELDS
        rows = [{"step": s, "epoch": s / 3, "loss": 1.0 / s, "lr": 1e-3, "grad_norm": None, "reward": 0.1 * s}
                for s in (1, 2, 3)]
        path.write_text(steps_csv(plot_rows(rows, fields), fields))
    proc = subprocess.run([str(bin_dir / "dvc"), "plots", "show", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    doc = json.loads(proc.stdout[proc.stdout.index("{"):])
    plots = {k: v for k, v in doc["data"].items() if k.startswith("results/steps/")}
    assert not doc.get("errors") or all(not e["name"].startswith("results/steps") for e in doc["errors"]), doc["errors"]
    assert sorted(plots) == ["results/steps/rl/qwen/sft.csv", "results/steps/sft/qwen/gift-b3.csv",
                             "results/steps/sft/qwen/sft.csv"]
    for name, rendered in plots.items():
        spec = json.dumps(rendered[0]["content"])
        y = "reward" if "/rl/" in name else "loss"
        assert '"field": "step"' in spec and f'"field": "{y}"' in spec, name
        assert len(rendered[0]["content"]["data"]["values"]) == 3
    plots_section = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    declared = [next(iter(p)) if isinstance(p, dict) else p for p in plots_section]
    assert {"results/steps/sft", "results/steps/rl"} <= set(declared)
