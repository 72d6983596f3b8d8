"""Small, flat metric files for DVC (`dvc metrics show/diff`, `dvc plots show/diff`)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from giftlab.io import write_json_atomic
from giftlab.provenance import write_sidecar


def _identity(record: Mapping[str, Any]) -> tuple[str, str]:
    job = record["provenance"]["config"]
    return job["backbone"], job["run"]


def write_summary(sft_metrics: Sequence[Mapping[str, Any]], rl_evals: Sequence[Mapping[str, Any]],
                  benchmark: str, *, metrics, val_loss, pass1, provenance, inputs: Sequence[str] = (),
                  config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """pass@1 after RL and final SFT validation loss per (backbone, run); val loss per epoch; pass@1 vs β. All three
    files stay flat (what `dvc metrics` and `dvc plots` show); their record is the ``provenance`` sidecar (config,
    seed, code version, packages, the sha256 of ``inputs`` and of the three files)."""
    by_run = {_identity(r): r for r in rl_evals}
    table: dict[str, dict[str, Any]] = {}
    curve, points = [], []
    for sft in sft_metrics:
        bb, run = _identity(sft)
        epochs = sorted(sft["epochs"], key=lambda e: e["epoch"])
        curve += [{"backbone": bb, "run": run, "epoch": e["epoch"], "val_loss": e["val_loss"]} for e in epochs]
        rl = by_run.get((bb, run))
        entry = {"sft_val_loss": epochs[-1]["val_loss"] if epochs else None}
        if rl is not None:
            entry["pass@1"] = rl["pass@1"]
            beta = sft["provenance"]["config"].get("beta")  # the SFT job's β (None: plain SFT, the β → ∞ limit)
            points.append({"backbone": bb, "run": run, "beta": None if beta is None or math.isinf(beta) else beta,
                           "pass@1": rl["pass@1"]})
        table.setdefault(bb, {})[run] = entry
    summary = {"benchmark": benchmark, **table}
    # Flat: a provenance block inside metrics.json made `dvc metrics show` 70 columns of it beside 4 numbers.
    write_json_atomic(metrics, summary)
    write_json_atomic(val_loss, curve)
    write_json_atomic(pass1, points)
    write_sidecar(provenance, config or {"benchmark": benchmark}, inputs, [metrics, val_loss, pass1])
    return summary
