"""Two clones share every artifact through one DVC remote: clone A regenerates the smoke-sized grid with `dvc repro`
and pushes, clone B pulls and has nothing to recompute, and `dvc exp run -S` reruns only what a key feeds.

A long integration test (a whole `dvc repro`, about 4 min on 2 cores): `.ci/run` runs it after the README's suite,
as `python -m pytest tests_integration/test_dvc_sharing.py`. The helpers are tests/workflow/test_dvc_pipeline.py's.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "workflow")]  # helpers.py, test_dvc_pipeline.py

from test_dvc_pipeline import (SHARING_GRID, copy_worktree, dvc_stages, out_path, run,  # noqa: E402
                               tree_digest)


def test_two_clones_share_artifacts_through_one_remote(tmp_path_factory):
    root = tmp_path_factory.mktemp("share")
    seed = copy_worktree(root / "seed", params_override=REPO / "config" / "smoke.yaml", extra=SHARING_GRID)
    remote = root / "dvc-remote"  # the shared-filesystem remote (docs/scale.md)
    origin = root / "origin.git"
    run(["git", "clone", "-q", "--bare", str(seed), str(origin)], root)

    # Clone A: regenerate everything with `dvc repro`, push artifacts, commit dvc.lock.
    a = root / "a"
    run(["git", "clone", "-q", str(origin), str(a)], root)
    run(["dvc", "remote", "modify", "--local", "shared", "url", str(remote)], a)
    repro = run("dvc repro", a, timeout=900)
    assert "Running stage 'figures'" in repro.stdout
    assert (a / "figures" / "fig1.pdf").read_bytes()[:5] == b"%PDF-"
    assert "up to date" in run("dvc status", a).stdout
    run("dvc push", a)
    run("git add dvc.lock", a)
    run(["git", "commit", "-qm", "results"], a)
    run("git push -q origin main", a)

    stages = dvc_stages(a)
    outs = [out_path(o) for st in stages.values() for o in st["outs"]]
    versioned = {rel: h for out in outs for rel, h in tree_digest(a, out).items()}
    assert versioned and not any("optimizer" in p or "/work/" in p or p.startswith("work/") for p in versioned)
    assert not any(p.endswith(".snakemake_timestamp") for p in run("dvc ls --dvc-only -R .", a).stdout.split())

    # Clone B: pull only; identical artifacts, nothing to recompute.
    b = root / "b"
    run(["git", "clone", "-q", str(origin), str(b)], root)
    run(["dvc", "remote", "modify", "--local", "shared", "url", str(remote)], b)
    run("dvc pull", b)
    assert {rel: h for out in outs for rel, h in tree_digest(b, out).items()} == versioned
    assert "up to date" in run("dvc status", b).stdout
    run(["bash", "scripts/after_pull.sh"], b)
    dry = run("snakemake -n", b)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    dry = run("snakemake -n phase_all", b)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    assert "up to date" in run("dvc status", b).stdout  # the touch left DVC's view unchanged
    # the pulled clone plans a config change like the clone that built it (the touch recorded every job's params;
    # without them the plan stopped: "made by another config")
    (b / "split.yaml").write_text("data:\n  split:\n    sft: 48\n")
    changed = run("snakemake -n --configfile split.yaml", b)
    assert re.search(r"^split\s+1$", changed.stdout, re.M), (changed.stdout + changed.stderr)[-3000:]
    (b / "split.yaml").unlink()
    assert "didn't change" in run("dvc repro", b).stdout
    assert not (b / "work").exists()  # trainer state never travels

    # A β-sweep-style experiment: `dvc exp run -S` reruns only the stages the changed key feeds.
    # (smoke already draws only qwen; an empty list means "every active backbone": same figure, new param)
    exp = run(["dvc", "exp", "run", "-S", "figures.fig1.backbones=[]"], a, timeout=600)
    text = exp.stdout + exp.stderr
    for stage in ("world", "base", "split", "sft", "grpo", "eval", "analysis"):
        assert f"Stage '{stage}' didn't change" in text, text[-3000:]
    assert "Running stage 'figures'" in text, text[-3000:]
    shown = run(["dvc", "exp", "show", "--csv"], a).stdout
    assert "figures.fig1.backbones" in shown
