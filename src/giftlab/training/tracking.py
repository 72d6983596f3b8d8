"""Experiment tracking for the SFT and GRPO jobs: TensorBoard by default, Weights & Biases / MLflow on request.

``sft.report_to`` / ``grpo.report_to`` (a list of :data:`TRACKERS`, default ``["tensorboard"]``) become the
Trainer's ``report_to``. A tracker whose package is missing fails before training, in one line naming the key;
wandb and mlflow are imported only by the Trainer's own callbacks, i.e. only when asked for.

TensorBoard events are written during training into the job's work directory (``work/<stage>/<run>/tensorboard``,
kept across a resume; the resumed writer purges the steps after the checkpoint, so a rerun step is shown once),
and copied into the job's output directory (``results/.../tensorboard``) through a temporary sibling and a rename
once the job has finished: a killed job leaves no directory that looks complete. The per-step training log
(``steps.jsonl`` in the work directory) becomes a flat CSV for ``dvc plots`` (``results/steps/<stage>/...csv``: CSV,
not JSON, because every result JSON of the pipeline is a record carrying its provenance).
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from transformers import TrainerCallback

from giftlab.cli import ConfigError
from giftlab.io import atomic_dir, write_text_atomic
from giftlab.runtime_keys import without_runtime

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # name -> the package it needs
DEFAULT_TRACKERS = ("tensorboard",)
# per-step fields for `dvc plots` (log key -> plot field); GRPO adds its RL statistics
SFT_FIELDS = {"epoch": "epoch", "loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm"}
GRPO_FIELDS = {**SFT_FIELDS, "reward": "reward", "reward_std": "reward_std", "kl": "kl", "entropy": "entropy",
               "completions/mean_length": "mean_length"}


def resolve_report_to(value: str | Sequence[str] | None, key: str) -> list[str]:
    """The trackers to report to; a ConfigError naming ``key`` for an unknown name or a missing package.

    ``importlib.util.find_spec`` checks for the package without importing it.
    """
    if value is None:
        return list(DEFAULT_TRACKERS)
    names = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"config error: {key}: unknown tracker {name!r} (one of {', '.join(TRACKERS)})")
        package = TRACKERS[name]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"config error: {key}: {name!r} needs the {package} package, which is not installed "
                              f"(pip install {package}, or remove it from {key})")
        if name not in out:
            out.append(name)
    return out


def without_tracking(job_config: Mapping[str, Any]) -> dict[str, Any]:
    """``job_config`` without its ``report_to`` keys (top level) and the runtime settings it ran with
    (:data:`giftlab.runtime_keys.RUNTIME_KEYS`: the trackers, GRPO's ``save_steps``): they change no result, so
    changing one keeps the resumable state in the work dir (a preempted run given a shorter checkpoint interval
    resumes from its checkpoint instead of training again from step 0)."""
    return without_runtime({k: v for k, v in job_config.items() if k != "report_to"})


def use_tensorboard(trainer, log_dir: str | Path, resume_step: int | None) -> None:
    """Point the Trainer's TensorBoard callback (if it reports to TensorBoard) at ``log_dir``.

    A fresh run clears ``log_dir`` (events of an attempt killed before its first checkpoint); a resumed one opens
    its writer with ``purge_step`` = the first step trained again, so TensorBoard drops the earlier attempt's
    events from that step on.
    """
    from transformers.integrations import TensorBoardCallback

    log_dir = Path(log_dir)
    for callback in trainer.callback_handler.callbacks:
        if not isinstance(callback, TensorBoardCallback):
            continue
        callback.logging_dir = str(log_dir)
        if not trainer.is_world_process_zero():
            continue
        if resume_step is None:
            shutil.rmtree(log_dir, ignore_errors=True)
        elif callable(getattr(callback, "_SummaryWriter", None)):  # the writer is created lazily at train begin
            callback._SummaryWriter = functools.partial(callback._SummaryWriter, purge_step=resume_step + 1)


class StepLog(TrainerCallback):
    """Append every logged optimiser step (SFT: loss, learning rate, grad norm, epoch; GRPO: also reward, KL,
    entropy, lengths, grading timeouts) to a JSONL file, from the main process (every process logs the same
    gathered row).

    Steps only (rows with a ``loss``): the Trainer's end-of-training summary describes one ``train()`` call (its
    runtime, its mean loss over that call's steps), so a resumed run's would differ from an uninterrupted one's.
    When training (re)starts, rows after the step it starts from are dropped: a resumed run logs them again.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            rows = read_step_rows(self.path, up_to_step=state.global_step) if state.global_step else []
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            tmp.replace(self.path)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"step": state.global_step, **logs}) + "\n")
        return control


def read_step_rows(path: str | Path, up_to_step: int | None = None) -> list[dict]:
    """Rows of a step log, without a torn last line and without steps after ``up_to_step``."""
    rows = []
    path = Path(path)
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # empty, or torn by a killed job
                continue
            if up_to_step is None or row.get("step", 0) <= up_to_step:
                rows.append(row)
    return rows


def plot_rows(rows: Iterable[Mapping[str, Any]], fields: Mapping[str, str] = SFT_FIELDS) -> list[dict]:
    """Flat per-step rows for ``dvc plots``: ``step`` plus ``fields`` (log key -> name), training steps only
    (rows with a ``loss``; the end-of-training summary has none), the last row of a step winning."""
    by_step: dict[int, dict] = {}
    for row in rows:
        if "loss" not in row:
            continue
        by_step[int(row["step"])] = {"step": int(row["step"]),
                                     **{name: row.get(key) for key, name in fields.items()}}
    return [by_step[s] for s in sorted(by_step)]


def steps_csv(rows: Sequence[Mapping[str, Any]], fields: Mapping[str, str] = SFT_FIELDS) -> str:
    """:func:`plot_rows` as CSV text: a header ``step`` + the field names, one line per step (missing values empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", *fields.values()], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def publish(tensorboard_src: str | Path, tensorboard_out: str | Path | None, steps: Sequence[Mapping[str, Any]],
            steps_out: str | Path | None, fields: Mapping[str, str] = SFT_FIELDS) -> None:
    """Write the job's tracking outputs: the TensorBoard directory (a copy of the work dir's events, renamed into
    place) and the per-step CSV of :func:`plot_rows` ``steps`` (atomic). Call it on the main process, after
    training finished."""
    if tensorboard_out is not None:
        src = Path(tensorboard_src)
        with atomic_dir(tensorboard_out) as tmp:
            if src.is_dir():
                for path in sorted(p for p in src.rglob("*") if p.is_file()):
                    dest = tmp / path.relative_to(src)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, dest)
    if steps_out is not None:
        write_text_atomic(steps_out, steps_csv(steps, fields))
