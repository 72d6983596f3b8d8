"""Forkserver preload: import the heavy grading dependencies once, in the forkserver.

Imported only by the forkserver (``GradingPool`` names this module as its preload) and by the grading workers,
never by the trainer. The forkserver is the workers' parent, and they die with it (PDEATHSIG): so, like them, it
ignores the signals SLURM sends every process of a job on ``scancel`` or preemption, while the trainer, which owns
the lifecycle, checkpoints on them (``giftlab.training.preemption``). It still exits when the trainer does (its
pipe to the trainer closes).
"""

import signal

for _sig in (signal.SIGTERM, signal.SIGUSR1):
    signal.signal(_sig, signal.SIG_IGN)

import latex2sympy2_extended  # noqa: F401
import math_verify  # noqa: F401
import sympy  # noqa: F401
from sympy.parsing import sympy_parser  # noqa: F401

from . import cascade, normalize  # noqa: F401
