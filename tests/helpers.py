"""Shared test utilities: run Snakemake from the repo's Snakefile in an isolated directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def venv_env() -> dict[str, str]:
    """Environment whose PATH starts with this interpreter's bin dir (rules call `python`)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def snakemake(workdir: Path, *args: str, configfiles=(), timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"),
           "--directory", str(workdir)]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    cmd += list(args)
    return subprocess.run(cmd, cwd=workdir, env=venv_env(), capture_output=True, text=True, timeout=timeout)


def write_override(path: Path, override: dict) -> Path:
    path.write_text(yaml.safe_dump(override))
    return path
