"""docs/scale.md's first paper run, executed as written, on the CPU rehearsal (config/rehearsal.yaml as the site).

The shell blocks are taken from the document, so it cannot drift from the code. What stands in for the cluster:
`scripts/make_rehearsal.py` for the downloads of step 2, config/rehearsal.yaml as `config/site.yaml`, the SLURM
profile without its executor (the SLURM path itself: test_slurm.py), a local folder as the DVC remote and a bare git
repository as the origin. Then a collaborator clones, pulls and finds nothing to recompute. ~10 min on 2 cores.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "scale.md"
BIN = Path(sys.executable).parent


def env() -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t"}


def sh(script: str, cwd: Path, timeout: int = 1800) -> str:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env(), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{script}\n--- exit {result.returncode}\n{(result.stdout + result.stderr)[-5000:]}"
    return result.stdout + result.stderr


def doc_block(first_line: str) -> str:
    """The docs/scale.md bash block whose first line starts with ``first_line``."""
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"docs/scale.md has no bash block starting with {first_line!r}")


def doc_command(prefix: str) -> str:
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith(prefix):
                return line.split(" # ")[0].strip()
    raise AssertionError(f"docs/scale.md has no command starting with {prefix!r}")


def copy_worktree(dest: Path) -> Path:
    """A git repository at ``dest`` with this checkout's files (tracked + untracked, not ignored)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
        elif src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dest / rel)
    sh("git init -q -b main && git add -A && git commit -qm snapshot", dest)
    return dest


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper-doc")
    origin, remote = root / "origin.git", root / "dvc-remote"
    work = copy_worktree(root / "a")
    sh(f"git init -q --bare -b main {origin} && git remote add origin {origin} && git push -q origin main", work)
    # step 2: the downloads (the rehearsal's stand-ins) and the site file
    sh(doc_command("python scripts/make_rehearsal.py"), work, timeout=300)
    shutil.copy(work / "config" / "rehearsal.yaml", work / "config" / "site.yaml")
    # the SLURM profile without its executor: the same settings, jobs run here
    profile = yaml.safe_load((work / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    profile = {k: v for k, v in profile.items() if k != "executor" and not k.startswith("slurm-")}
    (root / "profile").mkdir()
    (root / "profile" / "config.yaml").write_text(yaml.safe_dump({**profile, "jobs": 2, "cores": 2,
                                                                   "latency-wait": 5}))
    local = lambda command: command.replace("workflow/profiles/slurm", str(root / "profile"))  # noqa: E731
    # step 4: plan, then run (the same commands as a cluster user, on this machine)
    plan = sh(local(doc_command("snakemake phase_all -n")), work, timeout=300)
    checks = sh(doc_command("python scripts/check_benchmarks.py"), work, timeout=300)  # the ten, loaded
    run = sh(local(doc_command("snakemake phase_all --workflow-profile")), work, timeout=3000)
    return {"root": root, "work": work, "origin": origin, "remote": remote, "plan": plan, "run": run,
            "checks": checks}


def test_the_documented_run_completes_every_table_and_figure(cluster_run):
    work = cluster_run["work"]
    assert "world" not in cluster_run["plan"] and "pretrain_base" not in cluster_run["plan"]
    loaded = [line.split(":")[0] for line in cluster_run["checks"].splitlines() if " problems from " in line]
    assert len(loaded) == 10 and "ERROR" not in cluster_run["checks"], cluster_run["checks"]
    for n in (1, 2, 3, 4):
        table = (work / "results" / "tables" / f"table{n}.csv").read_text()
        assert "qwen" in table and "llama" in table, f"table{n}"
    for n in (1, 2, 3):
        assert (work / "figures" / f"fig{n}.pdf").read_bytes()[:5] == b"%PDF-"
    # SFT ran on two processes (torchrun, `launch:` in config/rehearsal.yaml): 32 examples per epoch at 2 per
    # process x 2 accumulation steps x 2 processes = 4 optimiser steps, 8 in 2 epochs (16 on one process)
    import json

    metrics = json.loads((work / "results" / "sft" / "llama" / "gift-b10" / "metrics.json").read_text())
    assert metrics["train_examples"] == 32 and metrics["steps"] == 8


def test_dvc_records_the_run_and_a_collaborator_recomputes_nothing(cluster_run):
    work, remote = cluster_run["work"], cluster_run["remote"]
    # §5: the paper-run branch, with the site file recorded too (the rehearsal's paths are in it)
    branch = doc_block("git switch -c paper-run").replace('CONFIGS="config/paper.yaml"',
                                                          'CONFIGS="config/paper.yaml config/site.yaml"')
    sh(f"dvc remote modify --local shared url {remote}\n{branch}", work)
    sh(doc_block("python scripts/verify.py"), work, timeout=900)   # verify (stops on a foreign output), then dvc commit
    assert "up to date" in sh("dvc status", work) or "Data and pipelines are up to date" in sh("dvc status", work)

    # a collaborator on the same cluster: the base models are where the site file says (a shared path); the
    # downloads the run read inside the repo (DeepMath, the benchmarks) come with `dvc pull` (stage `inputs`)
    b = cluster_run["root"] / "b"
    sh(f"git clone -q {cluster_run['origin']} {b}", cluster_run["root"])
    shutil.copytree(work / "rehearsal" / "models", b / "rehearsal" / "models", symlinks=True)
    (b / "config" / "site.yaml").write_text((work / "config" / "site.yaml").read_text())
    steps = doc_block("git clone <repo>").splitlines()[1:]  # the clone itself is done above
    steps = [line.replace("/lustre/projects/gift/dvc-storage", str(remote)) for line in steps]
    out = sh("git switch -q paper-run\n" + "\n".join(steps), b, timeout=900)
    assert "Nothing to be done" in out, out[-3000:]
    assert sorted(p.name for p in (b / "rehearsal" / "benchmarks").iterdir()) == \
        sorted(p.name for p in (work / "rehearsal" / "benchmarks").iterdir())
    for rel in ("results/tables/table1.csv", "figures/fig1.pdf", "models/rl/qwen/gift-b10/model.safetensors"):
        assert (b / rel).read_bytes() == (work / rel).read_bytes(), rel
    assert not (b / "models" / "sft" / "qwen" / "sft" / "epoch_1").exists()  # only sft.rl_epoch is versioned
