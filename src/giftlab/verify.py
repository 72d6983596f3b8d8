"""Check a whole workspace for torn or truncated artifacts, without loading a model (``scripts/verify.py``).

Snakemake decides what to rebuild from file times and job metadata, so a file damaged after it was written (a
copy cut short, a full disk, a bad pull) looks up to date and fails only when a consumer reads it. This walks the
pipeline's outputs and checks each by its format: every checkpoint folder under ``models/`` with
:func:`giftlab.models.check_weights` (safetensors headers against file sizes), every ``*.json`` under ``results/``
parses, every line of every ``*.jsonl`` parses, every figure starts with its format's signature, and every file a
``*.provenance.json`` sidecar lists among its outputs (tables, figures, the tiny MT-Bench questions) still has the
sha256 recorded when it was written, and every evaluation's samples file has the rows its summary counts. Each
problem is one line naming the file and the command that rebuilds it. (DVC-tracked copies are also checked against
their recorded hashes by ``dvc status``.)
"""

from __future__ import annotations

import json
from pathlib import Path

from giftlab.models import CorruptCheckpoint, check_weights, rebuild_hint
from giftlab.reporting.samples import SAMPLES_SUFFIX, samples_damage

SIGNATURES = {".pdf": b"%PDF-", ".png": b"\x89PNG\r\n\x1a\n"}


def _torn_temporary(path: Path, root: Path) -> bool:
    """Inside ``.<name>.tmp``: what an atomic write (giftlab.io, checkpoints.export_model) leaves when its job is killed
    mid-write; no output of any rule (.dvcignore: ``**/.*.tmp``), and the job's rerun removes it."""
    return any(part.startswith(".") and part.endswith(".tmp") for part in path.relative_to(root).parts[:-1])


def _problem(file: Path, what: str, snakemake_args: str = "", root: Path = Path(".")) -> str:
    """One line: the file as found, and the command that rebuilds it (its target relative to the workspace, as
    Snakemake names outputs)."""
    target = file.relative_to(root) if file.is_relative_to(root) else file
    args = f" {snakemake_args}" if snakemake_args else ""
    return f"{file}: {what}; rebuild it with `snakemake --force {target}{args}`"


def _check_json(file: Path) -> str | None:
    """What is wrong with a JSON file, or None."""
    try:
        json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not JSON ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
    return None


def _check_jsonl(file: Path) -> str | None:
    try:
        lines = file.read_text().splitlines()
    except UnicodeDecodeError:
        return "not text (UTF-8)"
    for number, line in enumerate(lines, 1):
        try:
            if line.strip():
                json.loads(line)
        except ValueError:
            return f"line {number} is not JSON (torn or truncated)"
    return None


def _check_recorded_outputs(root: Path, sidecar: Path) -> list[tuple[Path, str]]:
    """The outputs a provenance sidecar lists, against the sha256 recorded when they were written (its inputs may
    legitimately have changed since: Snakemake then rebuilds the sidecar's outputs)."""
    from giftlab.provenance import file_sha256

    try:
        outputs = json.loads(sidecar.read_text()).get("outputs") or {}
    except (ValueError, UnicodeDecodeError, AttributeError):
        return []  # the sidecar itself is reported by the JSON check
    problems = []
    for name, digest in outputs.items():
        file = root / name
        if file.is_file() and file_sha256(file) != digest:
            problems.append((file, f"changed since it was written (sha256 recorded in {sidecar.name})"))
    return problems


def verify_workspace(root: str | Path = ".", snakemake_args: str = "") -> tuple[int, list[str]]:
    """(files checked, problems): one line per damaged artifact under ``root``'s models/, results/, figures/, with
    the command that rebuilds it (``snakemake_args``: the run's profile arguments, e.g. its ``--configfile``)."""
    root = Path(root)
    checked, problems = 0, []
    for config in sorted((root / "models").rglob("config.json")):
        if _torn_temporary(config, root):
            continue
        checked += 1
        try:
            check_weights(config.parent)
        except CorruptCheckpoint as exc:
            problems.append(f"corrupt checkpoint {exc.file}: {exc.what}; {rebuild_hint(exc.file, snakemake_args)}")
        if not any(config.parent.glob("*.safetensors")):
            problems.append(f"{config.parent}: a checkpoint without weights; {rebuild_hint(config, snakemake_args)}")
    for file in sorted((root / "results").rglob("*")):
        if not file.is_file() or file.name.startswith(".") or _torn_temporary(file, root):
            continue
        check = {".json": _check_json, ".jsonl": _check_jsonl}.get(file.suffix)
        if check is not None:
            checked += 1
            what = check(file)
            if not what and file.name.endswith(SAMPLES_SUFFIX):  # whole lines, but as many as its summary counts?
                what = samples_damage(file)
            if what:
                problems.append(_problem(file, what, snakemake_args, root))
    for sidecar in sorted([*(root / "results").rglob("*.provenance.json"), *(root / "figures").glob("*.provenance.json"),
                           *(root / "data").rglob("*.provenance.json")]):
        problems += [_problem(file, what, snakemake_args, root)
                     for file, what in _check_recorded_outputs(root, sidecar)]
    for file in sorted((root / "figures").glob("*")):
        signature = SIGNATURES.get(file.suffix)
        if signature is not None and file.is_file():
            checked += 1
            with open(file, "rb") as fh:
                if fh.read(len(signature)) != signature:
                    problems.append(_problem(file, f"not a {file.suffix[1:].upper()} file", snakemake_args, root))
    return checked, problems
