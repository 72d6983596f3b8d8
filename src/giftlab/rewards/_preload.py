"""Forkserver preload: import the heavy grading dependencies once, in the forkserver."""

import latex2sympy2_extended  # noqa: F401
import math_verify  # noqa: F401
import sympy  # noqa: F401
from sympy.parsing import sympy_parser  # noqa: F401

from . import cascade, normalize  # noqa: F401
