"""RL-stage methods by name: plain GRPO and the paper's unified paradigms (Tables 1-2), LUFFY and ReLIFT.

    from giftlab.rl_methods import RL_METHODS, get_method
    method = get_method("luffy")
    params = method.check(config["unified"].get("luffy"))      # defaults + one-line errors
    Trainer = method.trainer_class(trl.GRPOTrainer)             # GRPOTrainer with the method's mixin in front

Adding a method: one module that calls :func:`register` (imported below), one test.
"""

from .base import RL_METHODS, RLMethod, get_method, register
from . import luffy as _luffy  # noqa: F401  (registers luffy)
from . import relift as _relift  # noqa: F401  (registers relift)

__all__ = ["RL_METHODS", "RLMethod", "get_method", "register"]
