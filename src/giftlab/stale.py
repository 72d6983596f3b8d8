"""Outputs made with another config than the one in force, that Snakemake would keep (``giftlab.plan`` lists them).

Snakemake reruns a job whose config changed only when its own bookkeeping (``.snakemake/metadata``) says so, and
trusts every file it has no record of. Outputs restored by DVC (``dvc pull``, ``dvc checkout``), copied in, or
recorded under the wrong ``params.yaml`` (a smoke run committed as the tiny default) therefore pass as up to date
whatever config made them. Every result JSON and every table/figure sidecar records the job config it was made
with (``provenance.config``); this compares it with the job the current config asks for:

* equal: fine;
* different, and Snakemake's record of the file holds a job config other than the current one: Snakemake
  reruns the job (its params changed) and replaces the file: fine;
* different, and Snakemake has no record of the file or recorded the current job for it (the file was replaced
  behind its back): **foreign**, reported in one line naming the file, the rule and the first differing key.

A file that does not exist is Snakemake's to build. One that no longer parses (damaged after it was written: a
copy cut short, a full disk) would also be kept by Snakemake and fail only its consumer: it is reported too, as is
a checkpoint whose safetensors files are torn (:func:`damaged_checkpoints`).
"""

from __future__ import annotations

import base64
import json
import shlex
from pathlib import Path
from typing import Any, Iterable, Mapping

_MISSING = object()
_DAMAGED = object()


def first_difference(recorded: Any, wanted: Any, where: str = "") -> str | None:
    """The first key path at which two job configs differ, as ``key: recorded → wanted``; None when equal."""
    if isinstance(recorded, Mapping) and isinstance(wanted, Mapping):
        for key in sorted(set(recorded) | set(wanted), key=str):
            here = f"{where}.{key}" if where else str(key)
            a, b = recorded.get(key, _MISSING), wanted.get(key, _MISSING)
            if a is _MISSING or b is _MISSING:
                show = lambda v: "absent" if v is _MISSING else _short(v)
                return f"{here}: {show(a)} → {show(b)}"
            found = first_difference(a, b, here)
            if found:
                return found
        return None
    if json.dumps(recorded, sort_keys=True) == json.dumps(wanted, sort_keys=True):
        return None
    return f"{where or 'config'}: {_short(recorded)} → {_short(wanted)}"


def _short(value: Any, width: int = 60) -> str:
    """A value's JSON, cut to ``width`` characters with an ellipsis that says it was cut."""
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[:width - 1] + "…"


def recorded_config(path: Path) -> Any:
    """The ``provenance.config`` a result file records; ``_MISSING`` when it has none, ``_DAMAGED`` when it does not
    parse."""
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return _DAMAGED
    except OSError:
        return _MISSING
    config = (record.get("provenance") or {}).get("config") if isinstance(record, Mapping) else None
    return _MISSING if config is None else config


def snakemake_job_config(root: Path, path: str) -> Any:
    """The job config (``--config`` of the shell command) Snakemake recorded for the job that wrote ``path``;
    ``_MISSING`` when it has no record of it (a DVC-restored or copied file)."""
    name = base64.urlsafe_b64encode(path.encode()).decode()
    try:
        record = json.loads((root / ".snakemake" / "metadata" / name).read_text())
        argv = shlex.split(record.get("shellcmd") or "")
        return json.loads(argv[argv.index("--config") + 1])
    except (OSError, ValueError, IndexError):
        return _MISSING


def _comparable(recorded: Any) -> Any:
    """A recorded job config less the runtime settings it ran with (trackers, checkpoint interval, grading
    processes: giftlab.runtime_keys.RUNTIME_KEYS), which no job config asks for."""
    from giftlab.runtime_keys import without_runtime

    return without_runtime(recorded) if isinstance(recorded, Mapping) else recorded


#: Snakemake's flags that rebuild outputs on purpose: a run given one is not stopped on foreign or damaged outputs
FORCE_FLAGS = ("-f", "-F", "-R", "--force", "--forceall", "--forcerun", "--forcetargets")


def forced_run(argv: Iterable[str]) -> bool:
    """Whether a Snakemake command line forces a rebuild (read from ``argv`` because Snakemake has not set its DAG
    settings while the Snakefile is read; a profile that sets ``forcerun`` is therefore not seen)."""
    return any(arg.split("=")[0] in FORCE_FLAGS for arg in argv)


def foreign_outputs(recorded: Iterable[tuple[str, str, Mapping[str, Any]]], root: str | Path = ".", *,
                    strict: bool = False) -> list[str]:
    """One line per output that another config made and Snakemake would keep (``recorded``: the plan's
    ``(path, rule, wanted job config)``, :meth:`giftlab.plan.Plan.recorded_configs`). ``strict``: every output
    another config made, whatever Snakemake would do (before recording outputs into DVC, which takes them as
    they are)."""
    root = Path(root)
    problems = []
    for path, rule, wanted in recorded:
        file = root / path
        if not file.is_file():
            continue
        made_with = recorded_config(file)
        if made_with is _MISSING:
            continue
        if made_with is _DAMAGED:
            problems.append(f"{path}: damaged (not JSON: cut short or overwritten after rule {rule} wrote it)")
            continue
        difference = first_difference(_comparable(made_with), dict(wanted))
        if difference is None:
            continue
        if not strict:
            snakemake_saw = snakemake_job_config(root, path)
            if snakemake_saw is not _MISSING and first_difference(_comparable(snakemake_saw), dict(wanted)) is not None:
                continue  # Snakemake recorded another job for it: its params trigger reruns the job
        problems.append(f"{path}: made by another config than this one asks for (rule {rule}, {difference})"
                        + ("" if strict else ", and Snakemake would keep it"))
    return problems


def damaged_checkpoints(outputs: Iterable[tuple[str, str]], root: str | Path = ".") -> list[str]:
    """One line per checkpoint folder (``outputs``: the plan's ``(folder, rule)``; an SFT run's epochs inside it)
    whose safetensors files are torn or truncated (:func:`giftlab.models.check_weights`, headers only)."""
    from giftlab.models import CorruptCheckpoint, check_weights

    root = Path(root)
    problems = []
    for output, rule in outputs:
        folder = root / output
        if not folder.is_dir():
            continue
        for config in sorted([folder / "config.json", *folder.glob("*/config.json")]):
            if not config.is_file():
                continue
            try:
                check_weights(config.parent)
            except CorruptCheckpoint as exc:  # "corrupt checkpoint <file>: <what>; <hint>"
                file, what = str(exc).removeprefix("corrupt checkpoint ").split("; ", 1)[0].split(": ", 1)
                file = Path(file).relative_to(root) if Path(file).is_absolute() else file
                problems.append(f"{file} is damaged ({what}; in {output}, output of rule {rule}), and Snakemake "
                                f"would keep it")
                break
    return problems


def verify_command(repo: Path, workspace: Path, configfiles: Iterable[str | Path] = ()) -> str:
    """The scripts/verify.py command that checks ``workspace`` as this run does: the same profiles over the same
    params.yaml, and for a workspace apart from the code (``snakemake -s <repo>/Snakefile --directory <it>``) the
    code's script, the workspace and the code's params.yaml."""
    workspace = Path(workspace).resolve()
    if Path(repo).resolve() == workspace:  # Snakemake's configfiles are absolute: here they read shorter relative
        files = [str(Path(f).relative_to(workspace)) if Path(f).is_relative_to(workspace) else str(f)
                 for f in configfiles]
        words = ["python", "scripts/verify.py"]
    else:
        files = [str(f) for f in configfiles]
        words = ["python", str(Path(repo) / "scripts" / "verify.py"), str(workspace),
                 "--params", str(Path(repo) / "params.yaml")]
    return shlex.join(words + (["--configfile", *files] if files else []))


def foreign_summary(problems: list[str], verify: str = "python scripts/verify.py") -> str:
    """The one-line refusal for a plan on top of foreign or damaged outputs (``verify``: :func:`verify_command`)."""
    more = f" (and {len(problems) - 1} more: `{verify}` lists them)" if len(problems) > 1 else ""
    return (f"stopped before any job: {problems[0]}{more}. Restore the outputs of this config (`dvc checkout` with its "
            f"params.yaml), or rebuild each with `snakemake --force <file or folder>` (deleting it is not enough: "
            f"Snakemake does not rebuild a missing file whose consumers are up to date).")
