"""The record every result file carries: config hash, seed, code version, package versions, hardware."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from giftlab.io import write_json_atomic

TRACKED_PACKAGES = (
    "giftlab", "torch", "transformers", "accelerate", "trl", "datasets", "tokenizers",
    "math-verify", "snakemake", "dvc", "numpy", "pandas", "matplotlib", "vllm", "triton", "liger-kernel",
)


# The paths whose changes make a result "-dirty": the code and the configs (not data, results or dvc.lock).
CODE_PATHS = ("src", "scripts", "workflow", "Snakefile", "params.yaml", "config", "dvc.yaml", "pyproject.toml",
              "requirements-cpu.txt", "requirements-gpu.txt")


def config_hash(config: Mapping[str, Any]) -> str:
    """A stable short hash of a (job) config: sorted-key JSON, sha256, 16 hex digits."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD of the repository holding this package, with ``-dirty`` when its code or config differ from it."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        # only what shapes results: code and config, committed or new (not dvc.lock, which DVC rewrites mid-run)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal", "--", *CODE_PATHS],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hardware() -> dict[str, Any]:
    """What computed the result. The same code, seeds and packages give bit-identical results on the same kind of
    machine only: torch picks its CPU kernels by instruction set (``cpu_capability``: AVX512, AVX2, ...), and their
    float rounding differs, so a training run on another CPU takes another trajectory (docs/speed.md). The torch
    fields are read only where the job imported torch (the report jobs never do)."""
    out: dict[str, Any] = {"machine": platform.machine(), "cpu": cpu_model()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        out["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return out


def provenance(config: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
    return {
        "config_hash": config_hash(config),
        "config": dict(config),
        "seed": seed if seed is not None else config.get("seed"),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "hardware": hardware(),
        "command": " ".join(sys.argv),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_result(path, payload: Mapping[str, Any], config: Mapping[str, Any],
                 seed: int | None = None) -> Path:
    """Write a result JSON atomically with its provenance record under the key ``provenance``."""
    record = dict(payload)
    record["provenance"] = provenance(config, seed)
    return write_json_atomic(path, record)


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sidecar(path, config: Mapping[str, Any], inputs, outputs, seed: int | None = None) -> Path:
    """Provenance for outputs that cannot carry it inside (tables, figures): a ``<stem>.provenance.json`` with the
    record of :func:`write_result` plus the sha256 of every input and output file. Write it after the outputs."""
    return write_result(path, {"inputs": {str(p): file_sha256(p) for p in inputs},
                               "outputs": {str(p): file_sha256(p) for p in outputs}}, config, seed)
