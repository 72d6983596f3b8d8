"""A module imported on its first use, not where it is named.

Snakemake's own process reads the objectives' registry (config checks, the plan's labels) on every `snakemake` call,
and the objective modules compute with torch; importing torch there cost 1.5 s of a 3.6 s dry run (2026-12-05) for
nothing. Those modules name torch through :class:`LazyModule`, so torch loads when a loss is first computed.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module ``name``: the first attribute read imports it; each attribute read is then kept."""

    def __init__(self, name: str):
        self._lazy_name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._lazy_name), attr)
        setattr(self, attr, value)  # later reads of this attribute are plain lookups
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


torch = LazyModule("torch")
