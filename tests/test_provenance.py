"""giftlab.provenance: the hardware a result was computed on is part of its record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from helpers import REPO


def test_hardware_names_the_cpu_and_the_instruction_set_torchs_kernels_use():
    """The instruction set is the one torch dispatches to (here forced to its portable kernels), read only where
    the job imported torch: the report jobs never do, and recording it must not make them."""
    code = ("import json, sys; from giftlab.provenance import provenance; a = provenance({})['hardware']; "
            "imported = 'torch' in sys.modules; import torch; b = provenance({})['hardware']; "
            "print(json.dumps([a, imported, b]))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    without_torch, imported, with_torch = json.loads(out.stdout)
    assert not imported and "cpu_capability" not in without_torch
    assert without_torch["cpu"] and without_torch["machine"] and with_torch["cpu"] == without_torch["cpu"]
    assert with_torch["cpu_capability"] == "DEFAULT" and with_torch["torch_threads"] >= 1


def test_a_gpu_result_records_cuda_cudnn_nccl_gpu_count_determinism_and_launch(monkeypatch):
    """A GPU job's record named the GPUs and nothing of the stack under them: PyPI's torch wheel is '2.13.0' whatever
    its CUDA, and cuDNN, NCCL, torch's deterministic and TF32 switches, the process count and accelerate's FSDP and
    mixed-precision settings, and vLLM's model runner (V1 and V2 sample a seeded request differently) were not
    recorded. No GPU here: torch's CUDA queries are faked."""
    import torch

    from giftlab import provenance as prov

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (9, 0))
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91300)
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 28, 3))
    for key, value in {"WORLD_SIZE": "8", "ACCELERATE_MIXED_PRECISION": "bf16", "FSDP_VERSION": "2",
                       "VLLM_USE_V2_MODEL_RUNNER": "1", "HF_TOKEN": "x", "ACCELERATE_API_KEY": "x"}.items():
        monkeypatch.setenv(key, value)
    record = prov.provenance({"seed": 3})
    hw = record["hardware"]
    assert hw["gpus"] == ["NVIDIA H100 80GB HBM3"] * 8 and hw["gpu_count"] == 8
    assert hw["cuda"] == {"runtime": "13.0", "cudnn": 91300, "nccl": "2.28.3", "capability": "9.0"}
    assert hw["determinism"]["deterministic_algorithms"] is False and "cudnn_benchmark" in hw["determinism"]
    assert "tf32_matmul" in hw["determinism"]
    env = record["environment"]
    assert env["WORLD_SIZE"] == "8" and env["ACCELERATE_MIXED_PRECISION"] == "bf16" and env["FSDP_VERSION"] == "2"
    assert env["VLLM_USE_V2_MODEL_RUNNER"] == "1"
    assert "HF_TOKEN" not in env and "ACCELERATE_API_KEY" not in env  # never a secret
    assert record["seed"] == 3 and record["git_commit"] and "vllm" in prov.TRACKED_PACKAGES


def test_the_code_version_recorded_is_the_one_the_job_started_with(monkeypatch):
    # A job started at commit A; while it ran, a change was committed (B). Its result recorded B: git_commit was
    # first read when the result was written. cli.setup reads it at the start.
    import argparse
    import subprocess

    from giftlab import cli
    from giftlab import provenance as prov

    head = {"sha": "a" * 40}

    def fake_run(cmd, **kwargs):
        out = f"{REPO}\n{head['sha']}" if cmd[:2] == ["git", "rev-parse"] else ""
        return subprocess.CompletedProcess(cmd, 0, stdout=out + "\n", stderr="")

    monkeypatch.setattr(prov.subprocess, "run", fake_run)
    prov.git_commit.cache_clear()
    try:
        cli.setup(argparse.Namespace(config='{"seed": 1}', runtime=None), torch_threads=False)
        head["sha"] = "b" * 40  # committed while the job runs
        assert prov.provenance({"seed": 1})["git_commit"] == "a" * 40
    finally:
        prov.git_commit.cache_clear()


def test_a_copy_without_git_inside_another_repository_records_no_commit_of_that_repository(tmp_path):
    # A workspace unpacked from a tarball (no .git) into a folder of another repository recorded that repository's
    # HEAD (with -dirty: the copy is untracked there) as the code version of every result: a commit that never held
    # this code. The code version is the repository holding this package's own checkout, or none.
    outer = tmp_path / "outer"
    outer.mkdir()
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=outer, check=True)
    (outer / "f").write_text("x\n")
    subprocess.run([*git, "add", "f"], cwd=outer, check=True)
    subprocess.run([*git, "commit", "-qm", "outer"], cwd=outer, check=True)
    outer_head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=outer, capture_output=True, text=True,
                                check=True).stdout.strip()
    workspace = outer / "workspace"
    shutil.copytree(REPO / "src" / "giftlab", workspace / "src" / "giftlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = "from giftlab.provenance import git_commit; print(git_commit())"
    env = {**os.environ, "PYTHONPATH": str(workspace / "src")}
    out = subprocess.run([sys.executable, "-c", code], cwd=workspace, env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert outer_head not in out
    assert out.startswith("nogit-")


def test_a_workspace_without_git_records_a_hash_of_its_code(tmp_path):
    # A job started from a tarball of the workspace (no .git) recorded the code version "unknown": nothing told two
    # results of different code apart. It records a hash of the code paths' files instead, which changes with them.
    workspace = tmp_path / "workspace"
    shutil.copytree(REPO / "src" / "giftlab", workspace / "src" / "giftlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = "from giftlab.provenance import git_commit; print(git_commit())"
    env = {**os.environ, "PYTHONPATH": str(workspace / "src")}

    def version():
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    first = version()
    assert first.startswith("nogit-") and version() == first
    (workspace / "params.yaml").write_text("seed: 1\n")
    assert version() not in (first, "unknown")


def committed_copy(workspace, files=None):
    """A git checkout holding a copy of the library (and ``files``: {relative path: text}), all committed."""
    shutil.copytree(REPO / "src" / "giftlab", workspace / "src" / "giftlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for rel, text in (files or {}).items():
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (workspace / rel).write_text(text)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=workspace, check=True)
    subprocess.run([*git, "add", "."], cwd=workspace, check=True)
    subprocess.run([*git, "commit", "-qm", "code"], cwd=workspace, check=True)
    return workspace


def test_the_site_files_docs_scale_asks_for_leave_a_clean_checkout_clean(tmp_path):
    # docs/scale.md has every cluster user write config/site.yaml (paths, account, partitions: "do not commit") and
    # config/extra.yaml; untracked under config/ (a CODE_PATHS folder), they stamped every result of the paper run
    # "<commit>-dirty", a commit with edited code indistinguishable from a clean one. Another new config still counts.
    workspace = committed_copy(tmp_path / "workspace", {".gitignore": (REPO / ".gitignore").read_text(),
                                                        "config/paper.yaml": "seed: 1\n"})
    code = "from giftlab.provenance import git_commit; print(git_commit())"
    env = {**os.environ, "PYTHONPATH": str(workspace / "src")}

    def version():
        return subprocess.run([sys.executable, "-c", code], cwd=workspace, env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    (workspace / "config" / "site.yaml").write_text("data: {path: /shared/data/DeepMath-103K}\n")
    (workspace / "config" / "extra.yaml").write_text("models: {extra: {}}\n")
    assert not version().endswith("-dirty")
    (workspace / "config" / "mine.yaml").write_text("seed: 2\n")
    assert version().endswith("-dirty")


def test_a_dirty_checkout_records_which_files_changed_and_a_hash_of_the_changes(tmp_path):
    """"<commit>-dirty" alone said nothing of what was edited: two results of one commit with different edits
    recorded the same string."""
    workspace = committed_copy(tmp_path / "workspace")
    code = "import json; from giftlab.provenance import provenance; print(json.dumps(provenance({})))"
    env = {**os.environ, "PYTHONPATH": str(workspace / "src")}

    def record():
        return json.loads(subprocess.run([sys.executable, "-c", code], cwd=workspace, env=env, capture_output=True,
                                         text=True, check=True).stdout)

    clean = record()
    assert "code_changes" not in clean and not clean["git_commit"].endswith("-dirty")
    assert clean["packages"]["sympy"] and len(clean["packages"]["all_sha256"]) == 16  # the grader's parser too
    tables = workspace / "src" / "giftlab" / "reporting" / "tables.py"
    tables.write_text(tables.read_text() + "# one edit\n")
    one = record()["code_changes"]
    assert one["files"] == ["src/giftlab/reporting/tables.py"]
    tables.write_text(tables.read_text() + "# another\n")
    (workspace / "src" / "giftlab" / "mine.py").write_text("x = 1\n")
    other = record()["code_changes"]
    assert other["files"] == ["src/giftlab/mine.py", "src/giftlab/reporting/tables.py"]
    assert other["diff_sha256"] != one["diff_sha256"]
