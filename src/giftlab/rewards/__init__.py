"""The GIFT reward (paper App. E.3): OpenMathInstruct cascade + Math-Verify, bounded per item.

>>> from giftlab.rewards import grade, GradeResult, GradingPool
>>> grade("... so \\boxed{\\frac{1}{2}}", "0.5").correct
True
>>> with GradingPool(workers=2, timeout=10.0) as pool:        # doctest: +SKIP
...     results = pool.grade_many(responses, golds)

``grade`` runs in-process with no wall-clock guard (trusted inputs); ``GradingPool`` runs each
grading in a killable worker process under a wall clock (untrusted model outputs).
"""

from .cascade import GradeResult, grade, grade_answer
from .extract import DEFAULT_MAX_CHARS, answer_part, extract_answer, last_boxed
from .normalize import math_equal
from .pool import DEFAULT_TIMEOUT, GradingPool, default_pool

__all__ = [
    "GradeResult",
    "GradingPool",
    "default_pool",
    "grade",
    "grade_answer",
    "answer_part",
    "last_boxed",
    "extract_answer",
    "math_equal",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_TIMEOUT",
]
