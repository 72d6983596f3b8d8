"""Shared plumbing for the thin entry points in ``scripts/``.

Every rule passes its job's resolved config section as JSON (``--config``) and names its
inputs and outputs explicitly, so a script runs the same under Snakemake, DVC or by hand.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence


class ConfigError(ValueError):
    """A bad config value; its message is one line naming the key."""


class JobFailed(RuntimeError):
    """A job that cannot finish as asked (e.g. a judge server still failing after its retries); one line saying
    what failed and what a rerun does. Nothing that looks complete is written."""


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a syntax error is one line naming the file, the line and the column."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True,
                   help="the job's config as a JSON string, or a path to a .json/.yaml file")
    p.add_argument("--runtime", default=None,
                   help="settings that change no result (giftlab.runtime_keys.RUNTIME_KEYS: trackers, checkpoint "
                        "interval, grading processes, ...), as --config takes them (JSON or a file), merged into it")
    return p


def _merged(config: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` merged into ``config``, section by section. (giftlab.config.deep_merge does this too, but that
    module imports this one: the library has no import cycle, tests/test_architecture.py.)"""
    out = dict(config)
    for key, value in extra.items():
        out[key] = _merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def load_job_config(value: str, option: str = "--config") -> dict[str, Any]:
    """``option``'s mapping: inline JSON or a .json/.yaml file; anything else is one line naming the option."""
    text = value.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{option}: not valid JSON ({exc.msg})") from None
    path = Path(value)
    if not path.exists():
        raise ConfigError(f"{option}: no such file {path}")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            config = yaml.safe_load(path.read_text())
        else:
            config = json.loads(path.read_text())
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError: one line naming the file
        raise ConfigError(f"{option}: {path}: not valid {path.suffix.lstrip('.') or 'JSON'} "
                          f"({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{option}: {path}: expected a mapping of keys, got {type(config).__name__}")
    return config


def setup(args: argparse.Namespace, torch_threads: bool = True) -> dict[str, Any]:
    """Parse the job config, configure logging and torch's thread count; return the config.

    ``torch_threads=False``: a job that never computes with torch (tables, figures, the judge) does not import it
    to set its threads (1.5-2 s of such a job).
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_job_config(args.config)
    if getattr(args, "runtime", None):
        config = _merged(config, load_job_config(args.runtime, "--runtime"))
    threads = int(os.environ.get("GIFTLAB_THREADS", config.get("threads", 1) or 1))
    # The code version a result records is the one the job starts with: read now (provenance.git_commit caches it),
    # not when the result is written, hours later, after a commit or an edit the running job never loaded.
    from giftlab.provenance import git_commit

    git_commit()
    if torch_threads:
        import torch

        torch.set_num_threads(threads)
    return config


def run(main_fn, argv: Sequence[str] | None = None) -> None:
    """Call ``main_fn(argv)``; turn expected user errors into one line on stderr, exit 1.

    After a single-process job's work, ``gc.freeze()``: the interpreter's exit then skips the cyclic collector's
    passes over the millions of objects torch and transformers created at import (0.6 s of a 5 s consistency job,
    docs/speed.md). Every object is still released by its reference count; nothing the job wrote is open by then.
    A rank of a multi-process run (``WORLD_SIZE`` > 1) exits as before: its teardown (NCCL's included) is untested
    on a GPU under a freeze, and seconds do not matter to a job of hours.
    """
    try:
        main_fn(argv)
        if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
            gc.freeze()
    except (ConfigError, JobFailed, FileNotFoundError, ValueError) as exc:
        if os.environ.get("GIFTLAB_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
