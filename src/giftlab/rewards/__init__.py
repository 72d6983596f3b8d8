"""The GIFT reward (paper App. E.3): OpenMathInstruct cascade + Math-Verify, bounded per item.

>>> from giftlab.rewards import grade, GradeResult, GradingPool
>>> grade("... so \\boxed{\\frac{1}{2}}", "0.5").correct
True
>>> with GradingPool(workers=2, timeout=10.0) as pool:        # doctest: +SKIP
...     results = pool.grade_many(responses, golds)

``grade`` runs in-process with no wall-clock guard (trusted inputs); ``GradingPool`` runs each
grading in a killable worker process under a wall clock (untrusted model outputs).
"""

from giftlab import lazy_exports

# Lazy: the tiny world imports only ``giftlab.rewards.extract``, not Math-Verify or the pool.
__getattr__, __all__ = lazy_exports(__name__, {
    "cascade": ("GradeResult", "grade", "grade_answer"),
    "extract": ("DEFAULT_MAX_CHARS", "answer_part", "extract_answer", "last_boxed"),
    "normalize": ("math_equal",),
    "pool": ("DEFAULT_TIMEOUT", "GradingPool", "default_pool"),
})
