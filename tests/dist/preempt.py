"""Run ``scripts/sft.py`` or ``scripts/grpo.py`` (argv as the script's own) with a pause at one optimiser step, so a
test can signal the job exactly there (tests/training/test_preemption.py)::

    PREEMPT_HOLD_STEP=5 PREEMPT_READY=/tmp/ready python tests/dist/preempt.py sft --config ... --base ...

At the end of step ``PREEMPT_HOLD_STEP`` each process writes ``<PREEMPT_READY>.<rank>`` and waits (up to 120 s) until
it has received SIGTERM / SIGUSR1. With ``PREEMPT_SELF_RANK=r`` only rank ``r`` is signalled, by itself, and the
other ranks do not wait: the signal reaches some processes only (as under SLURM when it reaches one node first).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _requested() -> bool:
    handler = signal.getsignal(signal.SIGTERM)  # PreemptionCheckpoint._handle while training
    return getattr(getattr(handler, "__self__", None), "requested", None) is not None


def hold_at_step(step: int, ready: str, self_rank: int | None):
    """A callback that pauses at optimiser step ``step`` until signalled. Its imports stay out of the module level:
    the grading pool's workers run this module again as __mp_main__ (scripts/grpo.py)."""
    from transformers import TrainerCallback

    class HoldAtStep(TrainerCallback):
        def __init__(self, step: int, ready: str, self_rank: int | None):
            self.step, self.ready, self.self_rank = step, ready, self_rank

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step != self.step:
                return control
            rank = int(os.environ.get("RANK", 0))
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "no preemption handler installed"
            if self.self_rank is not None:
                if rank == self.self_rank:
                    os.kill(os.getpid(), signal.SIGTERM)
                    deadline = time.time() + 10
                    while not _requested() and time.time() < deadline:
                        time.sleep(0.01)
                return control
            Path(f"{self.ready}.{rank}").write_text(str(state.global_step))
            deadline = time.time() + 120
            while not _requested() and time.time() < deadline:
                time.sleep(0.05)
            return control

    return HoldAtStep(step, ready, self_rank)


def main() -> None:
    which, argv = sys.argv[1], sys.argv[2:]
    sys.path.insert(0, str(REPO / "scripts"))
    script = __import__(which)
    self_rank = os.environ.get("PREEMPT_SELF_RANK")
    hold = hold_at_step(int(os.environ["PREEMPT_HOLD_STEP"]), os.environ.get("PREEMPT_READY", "/dev/null"),
                        int(self_rank) if self_rank else None)
    # the scripts import their trainer inside main(), so the library's function is the one to wrap
    if which == "sft":
        import giftlab.training.sft as library
        train = library.train_sft
        library.train_sft = lambda **kw: train(**kw, callbacks=[hold])
    else:
        import giftlab.training.grpo as library
        train = library.train_grpo
        library.train_grpo = lambda **kw: train(**kw, extra_callbacks=[hold])
    from giftlab import cli

    cli.run(script.main, argv)


if __name__ == "__main__":
    main()
