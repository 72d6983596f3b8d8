"""Save a complete checkpoint and stop when the job is told it will be killed (SLURM preemption, time limit).

SLURM sends SIGTERM to a preempted or timed-out job and SIGKILL after a grace period (``KillWait``, typically
30 s; ``sbatch --signal=TERM@120`` sends the signal 120 s before the time limit). :class:`PreemptionCheckpoint`
turns SIGTERM / SIGUSR1 into: finish the optimiser step under way, save a checkpoint the usual way (the
Trainer's own ``_save_checkpoint``, stamped complete by :class:`~giftlab.training.checkpoints.CompleteMarker`),
then leave ``train()`` by raising :class:`Preempted`. A signal that comes after a step's end, while a checkpoint is
saved anyway (an epoch's end, ``save_steps``), stops at that checkpoint. The job then exits non-zero without writing
its outputs (``scripts/sft.py``, ``scripts/grpo.py``), and its rerun resumes from that checkpoint
(:func:`~giftlab.training.checkpoints.last_complete_checkpoint`).

Why raise rather than let ``train()`` return: after a stop mid-epoch the Trainer still runs the epoch-end hooks
(the SFT ``EpochEnd`` callback would evaluate and export a half-trained epoch under a finished epoch's number)
and the train-end hooks (GRPO's RL-dynamics evaluation, minutes of generation inside the grace period), and
an epoch-end save would rewrite the checkpoint that is already stamped complete. Raising from ``on_save``, once
the checkpoint is stamped, skips all of that.

Several processes: the signal may reach only some ranks (or reach them at different steps), so at every
optimiser step end and every save the flag is all-reduced (MAX) when ``torch.distributed`` is initialised: every
rank stops at the same step, saves its part of the same checkpoint and raises after a barrier.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

from transformers import TrainerCallback

from giftlab.training.checkpoints import CompleteMarker, _distributed

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
EXIT_CODE = 75  # EX_TEMPFAIL: a temporary failure, rerunning the job resumes it


class Preempted(Exception):
    """A job stopped on a signal after saving what a rerun resumes from (a complete checkpoint at ``step``, or the
    rows of a reference cache: ``unit`` "row"); the job must not write outputs."""

    def __init__(self, step: int, checkpoint: str | Path | None = None, unit: str = "step"):
        super().__init__(f"preempted at {unit} {step}: {'checkpoint' if unit == 'step' else 'progress'} saved, "
                         f"rerun resumes")
        self.step = step
        self.checkpoint = checkpoint


class StopSignals:
    """A flag that SIGTERM / SIGUSR1 raise (``requested``: the signal), for a job that stops at a point of its
    own choosing. ``install()`` (main thread only; elsewhere a no-op) and ``uninstall()``, which restores the
    previous handlers; or ``with StopSignals() as signals:``."""

    notice = "stopping at the next safe point"

    def __init__(self, signals=SIGNALS):
        self.signals = tuple(signals)
        self.requested: int | None = None     # the signal this process received
        self._previous: dict = {}

    def _handle(self, signum, frame):  # runs between bytecodes of the main thread: set a flag, nothing else
        if self.requested is None:
            self.requested = signum
            os.write(2, f"received {signal.Signals(signum).name}: {self.notice}\n".encode())

    def install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def __enter__(self) -> "StopSignals":
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.uninstall()


class PreemptionCheckpoint(StopSignals, TrainerCallback):
    """On SIGTERM / SIGUSR1: checkpoint at the next optimiser step end, stamp it complete, raise :class:`Preempted`.

    Add it after :class:`CompleteMarker` (it stamps the checkpoint itself too, so a different order cannot leave
    an unstamped one). ``trainer`` (optional) lets it close the TensorBoard writer before leaving, like the end
    of training would. The handlers are installed at train begin (main thread only) and the previous ones
    restored when training ends or stops.
    """

    notice = "checkpointing at the next optimiser step"

    def __init__(self, trainer=None, signals=SIGNALS):
        super().__init__(signals)
        self.trainer = trainer
        self.stop_step: int | None = None     # the step all processes agreed to stop at

    # -- the stop decision, agreed by every process
    def _agreed(self, args) -> bool:
        flag = self.requested is not None
        dist = _distributed()
        if dist is None:
            return flag
        import torch

        device = args.device if dist.get_backend() != "gloo" else torch.device("cpu")
        tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    # -- TrainerCallback
    def on_train_begin(self, args, state, control, **kwargs):
        self.install()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_step is not None or not self._agreed(args):
            return control
        self.stop_step = state.global_step
        control.should_training_stop = True
        # An epoch-end save follows anyway under save_strategy "epoch" (after the epoch-end hooks, which a
        # checkpoint at the epoch's last step must include): save once, there.
        epoch_end = state.epoch is not None and float(state.epoch).is_integer()
        if not (str(getattr(args.save_strategy, "value", args.save_strategy)) == "epoch" and epoch_end):
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        # a signal that came after this step's end (during an epoch's validation and export, a rollout's evaluation,
        # or this save): stop at this checkpoint, not after one more step and a second save inside the grace period;
        # the last one is left to finish the job (its outputs follow), as before
        if self.stop_step is None:
            if not self._agreed(args) or 0 < state.max_steps <= state.global_step:
                return control
            self.stop_step = state.global_step
            control.should_training_stop = True
        CompleteMarker().on_save(args, state, control)  # idempotent: stamped whichever callback runs first
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        dist = _distributed()
        if dist is not None:  # no process leaves while another still writes its shard of the checkpoint
            dist.barrier()
        self._close_trackers()
        self.uninstall()
        raise Preempted(state.global_step, checkpoint)

    def on_train_end(self, args, state, control, **kwargs):
        self.uninstall()
        return control

    def _close_trackers(self) -> None:
        if self.trainer is None:
            return
        for callback in self.trainer.callback_handler.callbacks:
            writer = getattr(callback, "tb_writer", None)
            if writer is not None:
                writer.close()
                callback.tb_writer = None


def preempted_exit(exc: Preempted) -> None:
    """What a job does after :class:`Preempted`: one log line, no outputs, a non-zero exit (:data:`EXIT_CODE`)."""
    log.warning("%s", exc)
    raise SystemExit(EXIT_CODE)
