"""Under `dvc repro`: every file a phase reads that no rule makes is among its DVC stage's deps.

DVC reruns a stage when one of its deps changes, and knows of nothing else. The files the grid reads but no rule
writes (a copy of a benchmark in ``eval.benchmark_dir``, MT-Bench's question file, a local DeepMath-103K:
:meth:`giftlab.plan.Plan.phase_inputs`) are deps only where ``dvc.yaml`` lists them (docs/scale.md, "The paper
run", adds them for the paper's; a benchmark of one's own in a tiny workspace needs the same). One that is not
listed would be read once and never again: an edited gold answer, `dvc status` says "up to date", the tables keep
the old numbers. The Snakemake run a DVC stage starts (``DVC_STAGE`` set by DVC) stops first, in one line naming
the file and the stage.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from giftlab.cli import ConfigError


def stage_deps(dvc_yaml: Path, stage: str) -> list[str] | None:
    """The deps of ``stage`` in ``dvc_yaml``, or None where it has no such stage."""
    try:
        doc = yaml.safe_load(dvc_yaml.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None  # DVC itself read it to start this stage: nothing to add here
    spec = (doc.get("stages") or {}).get(stage)
    return None if not isinstance(spec, Mapping) else [str(d) for d in spec.get("deps") or []]


def _under(path: Path, deps: Sequence[Path]) -> bool:
    return any(path == dep or dep in path.parents for dep in deps)


def _covered(root: Path, file: str, deps: Sequence[str]) -> bool:
    """``file`` lies in a dep, as written (a symlink in a listed folder, which DVC hashes by its target) or resolved."""
    def plain(p: str) -> Path:
        return Path(os.path.abspath(root / Path(p).expanduser()))

    return (_under(plain(file), [plain(d) for d in deps])
            or _under(plain(file).resolve(), [plain(d).resolve() for d in deps]))


def check_stage_deps(phase_inputs: Mapping[str, Sequence[str]], root: str | Path, stage: str | None = None) -> None:
    """Inside a DVC stage (``stage``, default ``$DVC_STAGE``: ``eval`` or ``<path>/dvc.yaml:eval``), each existing
    file of ``phase_inputs[<stage>]`` must lie in a dep of that stage in ``<root>/dvc.yaml`` (the file, or a folder
    holding it): else one line (:class:`ConfigError`) naming both. Outside DVC, or for a stage the plan names no such
    files for, nothing; a stage that file lacks is said on stderr."""
    stage = stage if stage is not None else os.environ.get("DVC_STAGE", "")
    if not stage:
        return
    # DVC's address of the stage: `eval`, or `<dvc.yaml as written where dvc ran>:eval`; the stage runs in its
    # dvc.yaml's folder, this workspace
    name = stage.rpartition(":")[2]
    root = Path(root)
    files = [f for f in phase_inputs.get(name, ()) if (root / Path(f).expanduser()).exists()]
    if not files:
        return
    dvc_yaml = root / "dvc.yaml"
    deps = stage_deps(dvc_yaml, name)
    if deps is None:
        print(f"giftlab: DVC stage {stage}: no stage {name} in {dvc_yaml} to check the deps of", file=sys.stderr)
        return
    for f in files:
        if not _covered(root, f, deps):
            raise ConfigError(f"{dvc_yaml.name}: stage {name} reads {f}, which no rule makes, but its deps do not list "
                              f"it or a folder holding it: DVC would not rerun the stage when it changes. Add it (or "
                              f"its folder) to the stage's deps (docs/scale.md, \"The paper run\")")
