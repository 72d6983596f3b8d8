"""Load, merge and validate the pipeline config; derive run names and the experiment grid.

``params.yaml`` is the single source of truth (Snakemake's configfile and DVC's params file);
profiles under ``config/`` override it key by key. Every validation failure is one line that
names the offending key, raised as :class:`giftlab.cli.ConfigError`.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from giftlab.cli import ConfigError

DEFAULT_SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "params.schema.yaml"
_RUN_RE = re.compile(r"^(?P<method>[a-z][a-z0-9_]*?)(?:-b(?P<beta>\d+(?:\.\d+)?|inf))?$")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(*paths: str | Path, schema: str | Path | None = DEFAULT_SCHEMA) -> dict[str, Any]:
    """Read ``params.yaml`` then each override file in order, merge, validate."""
    config: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: top level must be a mapping")
        config = deep_merge(config, loaded)
    if schema is not None:
        validate_config(config, schema)
    return config


def _key_path(error) -> str:
    parts = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else (("." if parts else "") + str(p)))
    return "".join(parts) or "<top level>"


def validate_config(config: Mapping[str, Any], schema: str | Path = DEFAULT_SCHEMA) -> None:
    """Validate against the JSON schema plus cross-key rules; raise ConfigError (one line)."""
    import jsonschema

    schema_doc = yaml.safe_load(Path(schema).read_text())
    validator = jsonschema.Draft202012Validator(schema_doc)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        err = errors[0]
        if err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            prefix = _key_path(err)
            key = missing if prefix == "<top level>" else f"{prefix}.{missing}"
            raise ConfigError(f"config error: missing required key '{key}'")
        if err.validator == "additionalProperties":
            raise ConfigError(f"config error: {_key_path(err)}: {err.message}")
        raise ConfigError(f"config error: {_key_path(err)}: {err.message}")
    _check_cross_keys(config)


def _check_cross_keys(config: Mapping[str, Any]) -> None:
    sft = config["sft"]
    if sft["rl_epoch"] > sft["epochs"]:
        raise ConfigError(f"config error: sft.rl_epoch: {sft['rl_epoch']} is more than sft.epochs ({sft['epochs']})")
    for name, backbone in config["backbones"].items():
        if backbone["source"] == "tiny" and config["data"]["source"] != "tiny":
            raise ConfigError(f"config error: backbones.{name}.source: 'tiny' needs data.source 'tiny'")
    for fig, spec in config.get("figures", {}).items():
        for bb in spec.get("backbones", []):
            if bb not in config["backbones"]:
                raise ConfigError(f"config error: figures.{fig}.backbones: unknown backbone '{bb}'")
    bench = config["eval"]["benchmarks"]
    if config["eval"]["main_benchmark"] not in bench:
        raise ConfigError(f"config error: eval.main_benchmark: '{config['eval']['main_benchmark']}' is not in eval.benchmarks")


# ---------------------------------------------------------------- run names

def format_beta(beta: float) -> str:
    if math.isinf(beta):
        return "inf"
    return f"{beta:g}"


def run_name(method: str, beta: float | None = None) -> str:
    """The one place a run's name is derived: ``sft``, ``gift-b10``, ``gift-b0.5``."""
    return method if beta is None else f"{method}-b{format_beta(float(beta))}"


def parse_run(run: str) -> tuple[str, float | None]:
    match = _RUN_RE.match(run)
    if not match:
        raise ConfigError(f"not a run name: '{run}' (expected e.g. 'sft' or 'gift-b10')")
    beta = match.group("beta")
    return match.group("method"), (None if beta is None else float(beta))


def sft_runs(config: Mapping[str, Any]) -> list[str]:
    """Every SFT run of the grid, in config order: one per method, one per β for GIFT."""
    runs = []
    for method in config["sft"]["methods"]:
        if method == "gift":
            runs.extend(run_name("gift", b) for b in config["sft"]["gift_betas"])
        else:
            runs.append(run_name(method))
    return runs


def rl_runs(config: Mapping[str, Any]) -> list[str]:
    """SFT runs that go on to GRPO (all of them unless ``grpo.runs`` restricts it)."""
    wanted = config["grpo"].get("runs")
    runs = sft_runs(config)
    return runs if not wanted else [r for r in runs if r in set(wanted)]


def beta_of(run: str) -> float:
    """β of a run for plotting; plain SFT is the β → ∞ limit."""
    method, beta = parse_run(run)
    if beta is not None:
        return beta
    return math.inf


def unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
