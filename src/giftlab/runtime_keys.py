"""Settings that never change a result: trackers, GRPO's checkpoint interval, grading processes, how often an
evaluation saves its samples (under vLLM up to its batched kernels' rounding, as with any batch), how the MT-Bench
judge is reached (its request timeout, retries, concurrency, key variable and reply cache; not which judge).

They stay out of job configs, so changing one reruns nothing (Snakemake's params trigger), and reach the scripts
beside them (`--runtime`, ``giftlab.plan.Plan.runtime``); results record them with the config they ran with, and
giftlab.stale and the training work dirs' fingerprints leave them out. A module of its own, importing nothing of
the library: the training scripts read it, and their DVC stages list what they import.
"""

from __future__ import annotations

from typing import Any, Mapping

RUNTIME_KEYS = {"sft": ("report_to",), "grpo": ("report_to", "save_steps"),
                "eval": ("grading_workers", "code_workers", "save_every_prompts"),
                "judge": ("timeout_s", "max_retries", "max_in_flight", "api_key_env", "cache")}


def drop_keys(section: Mapping[str, Any], keys) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k not in keys}


def without_runtime(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """A job config as an output recorded it, less the runtime settings (:data:`RUNTIME_KEYS`) it ran with: what is
    compared with :meth:`giftlab.plan.Plan.job` (an SFT job's ``settings``, a GRPO job's ``grpo``, an evaluation's
    own keys, an MT-Bench judge job's ``judge``)."""
    out = dict(recorded)
    for section, kind in (("settings", "sft"), ("grpo", "grpo"), ("judge", "judge")):
        if isinstance(out.get(section), Mapping):
            out[section] = drop_keys(out[section], RUNTIME_KEYS[kind])
    if isinstance(out.get("benchmarks"), Mapping):
        out["benchmarks"] = {b: drop_keys(v, RUNTIME_KEYS["eval"]) if isinstance(v, Mapping) else v
                             for b, v in out["benchmarks"].items()}
    if "benchmark" in out:  # one benchmark's record of an evaluation (EvalSettings.of_benchmark)
        out = drop_keys(out, RUNTIME_KEYS["eval"])
    return out
