"""The code a run uses is its Snakefile's checkout's, whatever giftlab the environment installed.

A second clone or a `git worktree` run with the first one's virtualenv (an editable install of the first) planned
with, ran the jobs of, and recorded in each result's provenance the first clone's library: a table computed by another
checkout's code in progress, under its commit."""

from __future__ import annotations

import shutil
import subprocess

import giftlab
from helpers import REPO, venv_env

IMPORT_LOG = '''
import os as _os
if _os.environ.get("GIFTLAB_IMPORT_LOG"):
    with open(_os.environ["GIFTLAB_IMPORT_LOG"], "a") as _log:
        _log.write(__file__ + "\\n")
'''


def test_snakemake_and_its_jobs_import_the_snakefiles_checkout(tmp_path):
    checkout = tmp_path / "worktree"
    checkout.mkdir()
    for name in ("Snakefile", "params.yaml", "config", "workflow", "scripts", "src"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, checkout / name, **({"ignore": shutil.ignore_patterns("__pycache__", "*.egg-info")}
                                                if (REPO / name).is_dir() else {}))
    (checkout / "src" / "giftlab" / "__init__.py").write_text(
        (checkout / "src" / "giftlab" / "__init__.py").read_text() + IMPORT_LOG)
    log = tmp_path / "imports.log"
    env = venv_env(GIFTLAB_IMPORT_LOG=str(log))
    env.pop("PYTHONPATH", None)  # the environment's giftlab: this repository's
    work = tmp_path / "work"
    result = subprocess.run(["snakemake", "results/world.json", "-s", str(checkout / "Snakefile"), "-d", str(work),
                             "--cores", "1", "--configfile", str(REPO / "config" / "smoke.yaml")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = log.read_text().splitlines()
    assert len(imported) >= 2  # Snakemake's own process, and the world job's
    assert set(imported) == {str(checkout / "src" / "giftlab" / "__init__.py")}
    assert not str(checkout) in giftlab.__file__  # (this test's own process: the environment's)
