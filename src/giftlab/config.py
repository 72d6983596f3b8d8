"""Load, merge and validate the pipeline config (the job resources and launch lines through
:mod:`giftlab.resources`' checks). The run names and the experiment grid are :mod:`giftlab.grid`'s and
:mod:`giftlab.plan`'s (``RUN_PATTERN`` and ``run_name`` are re-exported here for the rules and the tests).

``params.yaml`` is the single source of truth (Snakemake's configfile and DVC's params file);
profiles under ``config/`` override it key by key. Every validation failure is one line that
names the offending key, raised as :class:`giftlab.cli.ConfigError`.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from giftlab.cli import ConfigError, read_yaml  # noqa: F401  (read_yaml: the Snakefile's, here)
from giftlab.grid import (DIRECT_RL, DIRECT_SFT, RUN_PATTERN, SEED_SUFFIX, grid_runs,  # noqa: F401
                          run_name)
from giftlab.jobs import DEFAULT_PASS_KS, check_dual_clip  # noqa: F401  (pass@k when a config names no eval.ks)
from giftlab.jobs import check_grpo_batch
from giftlab.resources import check_launch, check_resources, rule_processes, rule_resources

DEFAULT_SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "params.schema.yaml"


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
        loaded = read_yaml(path) or {}
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


# A YAML 1.2 number that YAML 1.1 (PyYAML, which Snakemake and DVC use) reads as a string: 1e-3, 5E+2, +1.5e-4
_YAML12_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def coerce_yaml12_numbers(config: Any, schema: Mapping[str, Any]) -> Any:
    """Numbers as YAML 1.2 reads them, where the schema asks for a number: ``lr: 1e-3`` is the float 0.001 (YAML 1.1
    reads a string and the config would be refused although the user wrote a number). Changes ``config`` in place
    (Snakemake's own config dict) and returns it; strings where the schema wants a string are left alone."""
    def wants_number(sub: Mapping[str, Any]) -> bool:
        kinds = sub.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        return "number" in kinds or "integer" in kinds

    def fix(value: Any, sub: Mapping[str, Any]) -> Any:
        if isinstance(value, str) and wants_number(sub) and _YAML12_FLOAT.match(value.strip()):
            number = float(value)
            return int(number) if "integer" in (sub.get("type") or []) and number.is_integer() else number
        if isinstance(value, dict):
            props, extra = sub.get("properties") or {}, sub.get("additionalProperties")
            for key in list(value):
                child = props.get(key, extra if isinstance(extra, Mapping) else None)
                if isinstance(child, Mapping):
                    value[key] = fix(value[key], child)
        elif isinstance(value, list) and isinstance(sub.get("items"), Mapping):
            value[:] = [fix(v, sub["items"]) for v in value]
        return value

    return fix(config, schema)


@functools.lru_cache(maxsize=4)
def _validator(schema: str, mtime_ns: int):
    """The schema document and its validator, read once per file version (the tests validate many configs)."""
    import jsonschema

    schema_doc = yaml.safe_load(Path(schema).read_text())
    return schema_doc, jsonschema.Draft202012Validator(schema_doc)


def validate_config(config: Mapping[str, Any], schema: str | Path = DEFAULT_SCHEMA) -> None:
    """Validate against the JSON schema plus cross-key rules; raise ConfigError (one line)."""
    schema_doc, validator = _validator(str(schema), Path(schema).stat().st_mtime_ns)
    coerce_yaml12_numbers(config, schema_doc)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        err = errors[0]
        if err.validator == "required":  # every key missing at that place, in one line
            prefix = _key_path(err)
            here = [e for e in errors if e.validator == "required" and _key_path(e) == prefix]
            # the keys an if/then asks for only once the keys it depends on (backbones.<name>.source) are there
            here = [e for e in here if "then" not in e.schema_path] or here
            missing = [e.message.split("'")[1] if "'" in e.message else e.message for e in here]
            keys = ", ".join(f"'{m if prefix == '<top level>' else f'{prefix}.{m}'}'" for m in missing)
            raise ConfigError(f"config error: missing required key{'s' if len(missing) > 1 else ''} {keys}")
        if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            allowed = sorted(err.schema.get("properties") or {})
            unknown = sorted(k for k in err.instance if k not in allowed)
            if allowed and unknown and not err.schema.get("patternProperties"):  # name the key, as a typo is
                prefix = _key_path(err)
                key = unknown[0] if prefix == "<top level>" else f"{prefix}.{unknown[0]}"
                raise ConfigError(f"config error: {key}: unknown key (one of {', '.join(allowed)})")
        raise ConfigError(f"config error: {_key_path(err)}: {err.message}")
    _check_cross_keys(config)


def _check_world(config: Mapping[str, Any]) -> None:
    """world.* are the tiny world generator's settings: its dataclass is the list of keys."""
    from dataclasses import fields

    from giftlab.tinyworld import WorldConfig

    known = sorted(f.name for f in fields(WorldConfig))
    for key in config.get("world") or {}:
        if key not in known:
            raise ConfigError(f"config error: world.{key}: not a tiny-world setting (one of {', '.join(known)})")


def _check_tiny_shape(name: str, backbone: Mapping[str, Any]) -> None:
    """A tiny base's attention shape, before the pretraining job builds it (transformers would fail deep inside)."""
    hidden, heads = backbone["hidden_size"], backbone["num_attention_heads"]
    kv = backbone.get("num_key_value_heads") or heads
    if hidden % heads:
        raise ConfigError(f"config error: backbones.{name}.hidden_size: {hidden} is not divisible by "
                          f"num_attention_heads ({heads})")
    if heads % kv:
        raise ConfigError(f"config error: backbones.{name}.num_key_value_heads: num_attention_heads ({heads}) is not "
                          f"divisible by {kv}")
    if (hidden // heads) % 2:  # rotary embeddings rotate pairs of a head's dimensions
        raise ConfigError(f"config error: backbones.{name}: head size hidden_size / num_attention_heads = "
                          f"{hidden // heads} is odd (rotary position embeddings need an even one)")


def _check_cross_keys(config: Mapping[str, Any]) -> None:
    _check_world(config)
    check_dual_clip(config["grpo"])
    sft = config["sft"]
    if sft["rl_epoch"] > sft["epochs"]:
        raise ConfigError(f"config error: sft.rl_epoch: {sft['rl_epoch']} is more than sft.epochs ({sft['epochs']})")
    for name, backbone in config["backbones"].items():
        if backbone["source"] == "tiny" and config["data"]["source"] != "tiny":
            raise ConfigError(f"config error: backbones.{name}.source: 'tiny' needs data.source 'tiny'")
        if backbone["source"] == "tiny":
            _check_tiny_shape(name, backbone)
    figures = config.get("figures", {})
    named = {"figures.backbones": figures.get("backbones") or []}
    named.update({f"figures.{fig}.backbones": spec.get("backbones") or []
                  for fig, spec in figures.items() if isinstance(spec, Mapping)})
    for key, backbones in named.items():
        for bb in backbones:
            if bb not in config["backbones"]:
                raise ConfigError(f"config error: {key}: unknown backbone '{bb}'")
    fig1 = (figures.get("fig1") or {}).get("backbones")
    if fig1 and figures.get("backbones") and not set(fig1) & set(figures["backbones"]):
        # Figure 1 draws only the backbones the grid builds (Plan.fig1_backbones): it would have no panel
        raise ConfigError(f"config error: figures.fig1.backbones: none of {list(fig1)} is in figures.backbones "
                          f"{list(figures['backbones'])}, the backbones the grid builds")
    bench = config["eval"]["benchmarks"]
    _check_benchmark_names(bench)  # first: a typo there is named as itself, not as another key's mismatch
    if config["eval"]["main_benchmark"] not in bench:
        raise ConfigError(f"config error: eval.main_benchmark: '{config['eval']['main_benchmark']}' is not in eval.benchmarks")
    for name in config["eval"].get("ood") or []:
        if name not in bench:
            raise ConfigError(f"config error: eval.ood: '{name}' is not in eval.benchmarks")
    if config["eval"]["main_benchmark"] in (config["eval"].get("ood") or []):
        raise ConfigError("config error: eval.main_benchmark: must be a reasoning (not an eval.ood) benchmark")
    for name in config["eval"].get("math") or []:
        if name not in bench:
            raise ConfigError(f"config error: eval.math: '{name}' is not in eval.benchmarks")
    for name in set(config["eval"].get("math") or []) & set(config["eval"].get("ood") or []):
        raise ConfigError(f"config error: eval.math: '{name}' is an eval.ood benchmark")
    _check_report_metric(config)
    _check_extra_models(config)
    _check_objective_params(config)  # before the grid: the grid is built from the registry's objectives
    _check_unified(config)           # before the grid: a unified run's id is its RL method's name
    _check_grid(config)
    _check_eval_samples(config)
    _check_mtbench(config)
    check_resources(config)
    check_launch(config)
    _check_tensor_parallel(config)
    processes = rule_processes(config, "grpo")
    if processes:  # at plan time, not after the GPU queue (the job checks the processes it got again)
        check_grpo_batch(config["grpo"], processes)


def _check_tensor_parallel(config: Mapping[str, Any]) -> None:
    """vLLM's tensor parallelism within the GPUs a job holds: an evaluation engine over more GPUs than its rule asks
    SLURM for (``resources.<rule>.gpu``) fails as it starts, after the job's wait in the queue; GRPO's colocated
    engines each take ``grpo.vllm.tensor_parallel_size`` of its processes (one per GPU), which it must divide."""
    ev = config.get("eval") or {}
    sizes = []
    for name in ev.get("benchmarks") or []:
        settings = eval_settings(ev, name)
        if settings.get("backend") == "vllm":
            sizes.append((int((settings.get("vllm") or {}).get("tensor_parallel_size") or 1), name))
    if sizes:
        tp, name = max(sizes, key=lambda size: size[0])  # the first benchmark at the largest
        for rule in (*EVAL_RULES, "evaluate_extra", "mtbench_answer"):  # the rules that generate with eval's engine
            gpus = rule_resources(config, rule).get("gpu")
            if str(gpus).isdigit() and 0 < int(gpus) < tp:
                raise ConfigError(f"config error: eval.vllm.tensor_parallel_size: {tp} GPUs per engine ({name}), but "
                                  f"resources.{rule}.gpu is {gpus}")
    grpo = config.get("grpo") or {}
    tp = int((grpo.get("vllm") or {}).get("tensor_parallel_size") or 1)
    gpus = rule_resources(config, "grpo").get("gpu")
    if grpo.get("use_vllm") and str(gpus).isdigit() and int(gpus) > 0 and int(gpus) % tp:
        raise ConfigError(f"config error: grpo.vllm.tensor_parallel_size: {tp} does not divide resources.grpo.gpu "
                          f"({gpus}): each colocated engine takes {tp} of the job's processes, one per GPU")


def mtbench_enabled(config: Mapping[str, Any]) -> bool:
    """Whether the config plans Table 5 (a ``mtbench`` section not switched off with ``enabled: false``)."""
    section = config.get("mtbench")
    return bool(section) and section.get("enabled", True) is not False


def _check_mtbench(config: Mapping[str, Any]) -> None:
    """``mtbench``: what Table 5 needs, in one line each, before any job runs (the schema checked the types)."""
    if not mtbench_enabled(config):
        return
    section = config["mtbench"]
    for key in ("questions", "max_new_tokens", "judge"):
        if key not in section:
            raise ConfigError(f"config error: missing required key 'mtbench.{key}'")
    trained_on_by_grpo = {spec.method for spec in grid_runs(config).values() if spec.sft and spec.rl}
    for method in section.get("methods") or []:
        if method not in config["sft"]["methods"]:
            raise ConfigError(f"config error: mtbench.methods: {method!r} is not one of sft.methods "
                              f"({', '.join(config['sft']['methods'])}): Table 5 rates SFT-then-RL policies")
        if method not in trained_on_by_grpo:
            raise ConfigError(f"config error: mtbench.methods: {method!r} has no GRPO run (grpo.runs leaves it out): "
                              "Table 5 rates SFT-then-RL policies")
    tiny = section["questions"] == "tiny"
    if tiny and config["data"]["source"] != "tiny":
        raise ConfigError("config error: mtbench.questions: 'tiny' needs data.source 'tiny' (give a local copy of "
                          "MT-Bench's question.jsonl instead)")
    judge = section["judge"]
    if judge["kind"] == "rubric" and not tiny:
        raise ConfigError("config error: mtbench.judge.kind: the rubric judge scores only the tiny dialogues (every "
                          "turn has an exact reference); MT-Bench's open questions need a model judge (kind: openai)")
    if judge["kind"] == "openai" and not judge.get("model"):
        raise ConfigError("config error: missing required key 'mtbench.judge.model' (the judge model's name, e.g. gpt-4)")
    if judge["kind"] == "rubric":
        from giftlab.evaluation.rubric_judge import RubricJudge

        try:
            RubricJudge(**{k: judge[k] for k in ("correct", "wrong", "missing") if k in judge})
        except ValueError as exc:
            raise ConfigError(f"config error: mtbench.judge: {exc}") from None


def check_local_paths(config: Mapping[str, Any], backbones: Iterable[str], root: str | Path = ".",
                      files: Iterable[tuple[str, str, str]] = ()) -> None:
    """The local paths the grid reads but no rule makes, checked before any job: ``backbones.<name>.path`` of each
    pretrained backbone of the grid, and ``data.path``, where they name a file or folder rather than a hub id
    (relative ones from ``root``, the workspace), and ``files`` ((key, path, what reads it):
    :meth:`giftlab.plan.Plan.local_inputs`). A missing one is one line naming its key; otherwise the jobs
    reading it (the split, every SFT and GRPO run on the cluster) would each fail on it after their wait."""
    from giftlab.data import looks_local as data_looks_local
    from giftlab.models import hub_cache_dir, hub_cached, hub_offline, looks_local as model_looks_local

    def missing(path: str) -> bool:
        return not (Path(root) / Path(path).expanduser()).exists()

    for name in backbones:
        spec = config["backbones"][name]
        path = spec.get("path")
        if spec["source"] != "pretrained" or not path:
            continue
        folder = Path(root) / Path(path).expanduser()
        owner = Path(root) / path.split("/")[0]
        if not folder.exists() and not model_looks_local(path) and owner.is_dir():  # hub-shaped, meant as a folder
            raise ConfigError(f"config error: backbones.{name}.path: no such folder: {path} ({owner.name}/ is a "
                              "folder here, so this is no hub id; a hub id's owner is no local folder)")
        check_checkpoint_folder(f"backbones.{name}.path", path, root,
                                "not a checkpoint folder: a download cut short, or the folder above or below it?")
        if not folder.exists() and hub_offline() and not hub_cached(path):
            raise ConfigError(f"config error: backbones.{name}.path: {path} is no folder here and not in the Hugging "
                              f"Face cache ({hub_cache_dir()}), and HF_HUB_OFFLINE is set: download it first "
                              "(docs/scale.md, step 2) or name its local folder (./models/...)")
    data = config["data"]
    if data["source"] != "tiny" and data.get("path") and data_looks_local(data["path"]) and missing(data["path"]):
        raise ConfigError(f"config error: data.path: no such file or folder: {data['path']} (a local copy; a hub "
                          "dataset id is owner/name)")
    for key, path, what in files:
        if missing(path):
            raise ConfigError(f"config error: {key}: no such file: {path} ({what})")


def check_checkpoint_folder(key: str, path: str, root: str | Path, no_config: str) -> bool:
    """A model path of the config (``key``) that names a local folder (not a hub id) must be one holding a
    ``config.json`` (``no_config``: what to say when it holds none); one line naming the key otherwise. Returns
    whether it is a local folder."""
    from giftlab.models import looks_local

    folder = Path(root) / Path(path).expanduser()
    if looks_local(path) and not folder.is_dir():
        raise ConfigError(f"config error: {key}: no such folder: {path} (a local checkpoint folder; a hub id is "
                          "owner/name)")
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise ConfigError(f"config error: {key}: {path} holds no config.json ({no_config})")
    return folder.is_dir()


def extra_models(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``models.extra``: {name: {path, backbone?}}, the checkpoints evaluated on demand (``snakemake extra_models``)."""
    return dict((config.get("models") or {}).get("extra") or {})


def _check_extra_models(config: Mapping[str, Any]) -> None:
    for name, spec in extra_models(config).items():
        backbone = spec.get("backbone")
        if backbone is not None and backbone not in config["backbones"]:
            raise ConfigError(f"config error: models.extra.{name}.backbone: '{backbone}' is not a key of backbones "
                              f"({', '.join(config['backbones'])})")



# MMLU-Redux's own settings, only as eval.per_benchmark.mmlu_redux (its job alone reruns when they change): which
# of MMLU-Redux 2.0's error_type labels (edinburgh-dawg/mmlu-redux-2.0) are scored, and wrong_groundtruth re-keyed
REDUX_KEYS = ("mmlu_redux_keep", "mmlu_redux_rekey")
# keys of eval.* that eval.per_benchmark.<name> may override (how one evaluation job samples and grades)
EVAL_JOB_KEYS = ("n_samples", "ks", "temperature", "top_p", "max_new_tokens", "batch_size", "backend", "vllm",
                 "grading_timeout", "grading_workers", "percent_rule", "code_timeout", "code_memory_mb",
                 "code_workers", "choice_shuffle_seed", "duplicates", "save_every_prompts", *REDUX_KEYS)


def _check_benchmark_names(names) -> None:
    from giftlab.evaluation.benchmarks import BENCHMARKS

    for name in names:
        if name not in BENCHMARKS:
            raise ConfigError(f"config error: eval.benchmarks: unknown benchmark '{name}' "
                              f"(known: {', '.join(sorted(BENCHMARKS))}; one of your own needs a register_local line: "
                              "docs/architecture.md, \"Adding a benchmark\")")


def _check_grid(config: Mapping[str, Any]) -> None:
    """Names that select parts of the grid must exist: a typo would silently drop runs or benchmarks."""
    from giftlab.evaluation.benchmarks import BENCHMARKS, REDUX_ERROR_TYPES

    known_runs = list(dict.fromkeys(spec.cell for spec in grid_runs(config).values() if spec.sft))
    for run in config["grpo"].get("runs") or []:
        if run not in known_runs:
            raise ConfigError(f"config error: grpo.runs: '{run}' is not an SFT run of this grid "
                              f"(one of {', '.join(known_runs)})")
    # per_benchmark may name benchmarks outside eval.benchmarks (a profile run on a subset; merged configs
    # cannot delete keys), but not unknown ones
    for name, overrides in (config["eval"].get("per_benchmark") or {}).items():
        if name not in BENCHMARKS:
            raise ConfigError(f"config error: eval.per_benchmark: unknown benchmark '{name}'")
        for key in overrides:
            if key not in EVAL_JOB_KEYS:
                raise ConfigError(f"config error: eval.per_benchmark.{name}.{key}: not an evaluation setting "
                                  f"(one of {', '.join(EVAL_JOB_KEYS)})")
            if key in REDUX_KEYS and name != "mmlu_redux":
                raise ConfigError(f"config error: eval.per_benchmark.{name}.{key}: an MMLU-Redux setting "
                                  "(eval.per_benchmark.mmlu_redux)")
        keep = overrides.get("mmlu_redux_keep", ["ok"])
        if not isinstance(keep, list) or not keep or any(t not in REDUX_ERROR_TYPES for t in keep):
            raise ConfigError(f"config error: eval.per_benchmark.{name}.mmlu_redux_keep: {keep!r} is not a list of "
                              f"error types ({', '.join(REDUX_ERROR_TYPES)})")
        if not isinstance(overrides.get("mmlu_redux_rekey", False), bool):
            raise ConfigError(f"config error: eval.per_benchmark.{name}.mmlu_redux_rekey: true or false")


def _check_eval_samples(config: Mapping[str, Any]) -> None:
    """Every pass@k an evaluation job is asked for needs k <= its n_samples (else the column would be NaN)."""
    ev = config["eval"]
    for name in ev["benchmarks"]:
        for pre_rl in (False, True):
            settings = eval_settings(ev, name, pre_rl=pre_rl)
            ks, n = settings.get("ks", DEFAULT_PASS_KS), int(settings["n_samples"])
            if ks and max(ks) > n:
                where = ("eval.pre_rl" if pre_rl and ev.get("pre_rl") else "eval") + (
                    f" / eval.per_benchmark.{name}" if name in (ev.get("per_benchmark") or {}) else "")
                raise ConfigError(f"config error: {where}: ks asks for pass@{max(ks)} on {name} but n_samples "
                                  f"is {n}")


def _check_objective_params(config: Mapping[str, Any]) -> None:
    """Build every objective of the grid once, so a bad hyperparameter fails before any job runs."""
    from giftlab.objectives import OBJECTIVES, get_objective

    known = ", ".join(OBJECTIVES)
    for i, method in enumerate(config["sft"]["methods"]):
        if method not in OBJECTIVES:
            raise ConfigError(f"config error: sft.methods[{i}]: unknown objective '{method}' (known: {known}; one "
                              "of your own is registered when src/giftlab/objectives/__init__.py imports its module)")
        if method in (DIRECT_SFT, DIRECT_RL):  # the grid's baselines hold these run ids
            raise ConfigError(f"config error: sft.methods[{i}]: objective '{method}' has the run id of a baseline "
                              "(sft.direct_sft / grpo.direct_rl); register it under another name")
    params = config["sft"].get("objective_params") or {}
    for method in params:
        if method not in OBJECTIVES:
            raise ConfigError(f"config error: sft.objective_params: unknown objective '{method}' (known: {known})")
    for method, spec in OBJECTIVES.items():
        if spec.beta_swept and "beta" in (params.get(method) or {}):
            raise ConfigError(f"config error: sft.objective_params.{method}.beta: β comes from sft.gift_betas "
                              "(one run each)")
        if method in params and method not in config["sft"]["methods"]:  # checked now, not once it is switched on
            try:
                get_objective(method, **(params[method] or {}))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"config error: sft.objective_params.{method}: {exc}") from None
    for spec in grid_runs(config).values():
        if not spec.sft:
            continue
        method, beta = spec.method, spec.beta
        kwargs = dict(params.get(method) or {}, **({} if beta is None else {"beta": beta}))
        try:
            objective = get_objective(method, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config error: sft.objective_params.{method}: {exc}") from None
        if objective.needs_ref and config["sft"].get("reference", "exact") == "cached":
            try:
                objective.check_cached_reference()
            except ValueError as exc:
                raise ConfigError(f"config error: sft.reference: cached with sft.objective_params.{method}: "
                                  f"{exc}") from None


def _check_unified(config: Mapping[str, Any]) -> None:
    """``unified``: the RL-stage methods of the Unified Paradigms rows (giftlab.rl_methods). Every name is a key of the
    registry, every ``unified.<method>`` section passes the method's own check (one line naming
    ``unified.<method>.<key>``) whether or not ``unified.methods`` runs it, and a method's run id names no other run."""
    from giftlab.objectives import OBJECTIVES
    from giftlab.rl_methods import RL_METHODS, get_method

    unified = config.get("unified") or {}
    known = ", ".join(RL_METHODS)
    for i, name in enumerate(unified.get("methods") or []):
        if name not in RL_METHODS:
            raise ConfigError(f"config error: unified.methods[{i}]: unknown RL method '{name}' (known: {known})")
        if name in OBJECTIVES or name in (DIRECT_SFT, DIRECT_RL):
            raise ConfigError(f"config error: unified.methods[{i}]: '{name}' is also the id of another run "
                              "(an objective or a Direct baseline)")
    for name in [k for k in unified if k != "methods"]:
        if name not in RL_METHODS:
            raise ConfigError(f"config error: unified.{name}: unknown RL method (known: {known})")
    checked = {name: get_method(name).check(unified.get(name), config["grpo"])  # its keys, and against grpo
               for name in dict.fromkeys([*(unified.get("methods") or []), *(k for k in unified if k != "methods")])}
    processes = rule_processes(config, "grpo")
    if "relift" in (unified.get("methods") or []) and processes:
        from giftlab.rl_methods.relift import check_sft_split

        try:  # ReLIFT's SFT micro-batches are collective: the same number on every process of a GRPO job
            check_sft_split(checked["relift"], processes)
        except ValueError as exc:
            raise ConfigError(f"config error: {exc}") from None


def _check_report_metric(config: Mapping[str, Any]) -> None:
    """eval.report_metric.<backbone>.<benchmark> = 'pass@k' needs k among that benchmark's final-eval ks."""
    from giftlab.evaluation.benchmarks import BENCHMARKS

    for bb, per_bench in (config["eval"].get("report_metric") or {}).items():
        if bb not in config["backbones"]:
            raise ConfigError(f"config error: eval.report_metric: unknown backbone '{bb}'")
        for name, metric in per_bench.items():
            key = f"eval.report_metric.{bb}.{name}"
            if name not in BENCHMARKS:
                raise ConfigError(f"config error: {key}: unknown benchmark '{name}'")
            if name not in config["eval"]["benchmarks"]:  # e.g. the paper profile run on a subset
                continue
            settings = eval_settings(config["eval"], name)
            k = int(metric.split("@")[1])
            if k not in settings.get("ks", DEFAULT_PASS_KS) or k > settings["n_samples"]:
                raise ConfigError(f"config error: {key}: {metric} needs {k} in the benchmark's ks and "
                                  f"n_samples >= {k} (eval.per_benchmark.{name})")


# ---------------------------------------------------------------- evaluation rules

# The evaluation rules (workflow/rules/eval.smk), one job per model on all its benchmarks: which models each
# evaluates (wildcard patterns, kept disjoint) and on which benchmark group. Post-RL policies and Direct SFT are
# final policies (Tables 1-2, every benchmark); the SFT checkpoints RL starts from are scored before RL on the
# reasoning benchmarks (Table 3, rl_gain), with eval.pre_rl's sampling.
EVAL_RULES = {
    "evaluate": {"stage": "rl", "run": RUN_PATTERN, "group": "all", "pre_rl": False},
    "evaluate_direct_sft": {"stage": "sft", "run": DIRECT_SFT + SEED_SUFFIX, "group": "all", "pre_rl": False},
    "evaluate_pre_rl": {"stage": "sft", "run": f"(?!{DIRECT_SFT}{SEED_SUFFIX}(/|$)){RUN_PATTERN}", "group": "reasoning",
                        "pre_rl": True},
}


def benchmarks(config: Mapping[str, Any], group: str = "all") -> list[str]:
    """``eval.benchmarks`` split into reasoning (Table 1) and out-of-distribution (Table 2) groups.

    ``math``: the mathematical reasoning benchmarks that Table 3 and Figure 1 average over
    (``eval.math``; default: the reasoning group).
    """
    every, ood = list(config["eval"]["benchmarks"]), set(config["eval"].get("ood") or [])
    if group == "ood":
        return [b for b in every if b in ood]
    if group == "reasoning":
        return [b for b in every if b not in ood]
    if group == "math":
        math_set = set(config["eval"].get("math") or [])
        return [b for b in every if b in math_set] if math_set else benchmarks(config, "reasoning")
    return every


# eval.* keys that shape the experiment grid or the reports, not how one evaluation job samples
EVAL_GRID_KEYS = ("pre_rl", "per_benchmark", "report_metric", "benchmarks", "ood", "math", "main_benchmark",
                  "benchmark_dir", "consistency_examples", "consistency_dtype", "consistency_geometry")


def eval_settings(eval_cfg: Mapping[str, Any], benchmark: str, pre_rl: bool = False) -> dict[str, Any]:
    """The sampling settings of one evaluation job: ``eval.*``, then ``eval.pre_rl`` for an SFT checkpoint
    before RL (Table 3), then ``eval.per_benchmark[benchmark]``.

    When both of the last two apply (e.g. AIME before RL) neither may lose what it asked for: the job takes
    the larger ``n_samples`` and the union of the ``ks``, so Table 3's pass@2/4 and the pass@32 of AIME
    both exist.
    """
    settings = {k: v for k, v in eval_cfg.items() if k not in EVAL_GRID_KEYS}
    pre = dict(eval_cfg.get("pre_rl") or {}) if pre_rl else {}
    settings.update(pre)
    for key, value in ((eval_cfg.get("per_benchmark") or {}).get(benchmark) or {}).items():
        if key == "n_samples" and "n_samples" in pre:
            value = max(int(value), int(pre["n_samples"]))
        elif key == "ks" and "ks" in pre:
            value = sorted({int(k) for k in [*value, *pre["ks"]]})
        settings[key] = value
    return settings


def unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
