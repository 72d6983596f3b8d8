"""The record every result file carries: config hash, seed, code version, package versions, hardware."""

from __future__ import annotations

import hashlib
import json
import os
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
    "giftlab", "torch", "transformers", "accelerate", "trl", "datasets", "tokenizers", "safetensors", "huggingface-hub",
    "math-verify", "snakemake", "dvc", "numpy", "pandas", "pyarrow", "matplotlib", "vllm", "triton", "liger-kernel",
    # vLLM's sampling and attention kernels (a dependency vllm pins); flash-attn where a site installs it
    "flashinfer-python", "flash-attn",
    # the grading: math-verify's parsers (unpinned by it), which decide what counts as a right answer
    "sympy", "latex2sympy2-extended", "antlr4-python3-runtime",
)

#: Environment variables that change what a GPU job computes: how it was launched (accelerate launch's FSDP and
#: mixed-precision settings), cuBLAS's deterministic workspace, TF32, and vLLM's choice of model runner (V1 and V2
#: sample a seeded request differently: a torch.Generator per request, or a hash of seed and position),
#: attention backend, sampler and batch invariance. Names only from this list and these prefixes are recorded.
SHAPING_ENV = ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE",
               "VLLM_USE_V2_MODEL_RUNNER", "VLLM_ATTENTION_BACKEND", "VLLM_USE_FLASHINFER_SAMPLER",
               "VLLM_BATCH_INVARIANT", "VLLM_ENABLE_V1_MULTIPROCESSING")
SHAPING_ENV_PREFIXES = ("ACCELERATE_", "FSDP_")
_SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD")


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
        top, head = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=root, capture_output=True,
                                   text=True, timeout=10, check=True).stdout.splitlines()
        if Path(top).resolve() != root:  # a copy without .git (a tarball) inside another repository: not its code
            return code_tree_version(root)
        # only what shapes results: code and config, committed or new (not dvc.lock, which DVC rewrites mid-run)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal", "--", *CODE_PATHS],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return code_tree_version(root)


@lru_cache(maxsize=1)
def code_changes() -> dict[str, Any] | None:
    """What ``-dirty`` stands for, where :func:`git_commit` says it: the changed and new files of :data:`CODE_PATHS`
    and ``diff_sha256``, 16 hex digits of a sha256 over ``git diff HEAD`` of them and the new files' contents, so two
    results of the same commit with different edits say so. None for a clean checkout or no git."""
    root = Path(__file__).resolve().parents[2]
    if not git_commit().endswith("-dirty"):
        return None
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout.splitlines()
        diff = subprocess.run(["git", "diff", "HEAD", "--", *CODE_PATHS], cwd=root, capture_output=True, timeout=30,
                              check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    digest = hashlib.sha256(diff)
    files = sorted(line[3:] for line in status)
    for line in sorted(status):
        if line.startswith("??") and (root / line[3:]).is_file():  # new files: git diff HEAD holds none of them
            digest.update(f"{line[3:]}\0{file_sha256(root / line[3:])}\n".encode())
    return {"files": files, "diff_sha256": digest.hexdigest()[:16]}


def code_tree_version(root: Path) -> str:
    """The code version of a workspace that is no git checkout (a tarball, a copy without .git): ``nogit-`` and 16
    hex digits of a sha256 over the files of :data:`CODE_PATHS` (their relative paths and contents; hidden files and
    ``__pycache__`` left out), so two results of the same code say so; ``unknown`` when none of them is there."""
    digest = hashlib.sha256()
    files = 0
    for name in CODE_PATHS:
        base = root / name
        for file in [base] if base.is_file() else visible_files(base, skip=("__pycache__",)):
            digest.update(f"{file.relative_to(root).as_posix()}\0{file_sha256(file)}\n".encode())
            files += 1
    return f"nogit-{digest.hexdigest()[:16]}" if files else "unknown"


#: The library code that decides what a trainer computes (the trainers, objectives, RL methods, rewards, the sampling
#: and pass@k GRPO's rollouts and dynamics run, the tiny world's tokenizer, the data and model loaders, the typed job
#: settings), as paths under ``src/giftlab`` (a folder: all of it): :func:`training_code_version` hashes it. The rest
#: (planning, config checks, the benchmarks' registry where one's own is added, reports, the consistency analysis,
#: provenance, locks) may be edited while a run trains and leaves its checkpoints resumable.
TRAINING_CODE = ("training", "objectives", "rl_methods", "rewards", "evaluation/generation.py", "evaluation/runner.py",
                 "tinyworld", "__init__.py", "data.py", "models.py", "rowfiles.py", "lazy.py", "jobs.py", "cli.py",
                 "stats.py")


@lru_cache(maxsize=1)
def training_code_version() -> str:
    """16 hex digits of a sha256 over the files of :data:`TRAINING_CODE` (relative paths and contents). A training
    work folder's stamp holds it (:func:`giftlab.training.checkpoints.prepare_work_dir`): a checkpoint made by other
    training code is not resumed, or a forced rerun after an edit to an objective would re-export the old weights
    under the new commit."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for file in visible_files(package, skip=("__pycache__",)):
        rel = file.relative_to(package).as_posix()
        if any(rel == path or rel.startswith(f"{path}/") for path in TRAINING_CODE):
            digest.update(f"{rel}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()[:16]


def visible_files(folder: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    """The files under ``folder`` in path order, less hidden files and folders and those named in ``skip``."""
    return [file for file in sorted(folder.rglob("*")) if file.is_file()
            and not any(part.startswith(".") or part in skip for part in file.relative_to(folder).parts)]


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Python and the versions of :data:`TRACKED_PACKAGES` installed, and ``all_sha256``: 16 hex digits of a sha256 over
    every installed distribution's ``name==version`` (sorted), which tells two environments apart in any package."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    installed = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in metadata.distributions()})
    versions["all_sha256"] = hashlib.sha256("\n".join(installed).encode()).hexdigest()[:16]
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
        out["determinism"] = determinism(torch)
        if torch.cuda.is_available():
            out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            out["gpu_count"] = len(out["gpus"])
            out["cuda"] = cuda_stack(torch)
    return out


def determinism(torch) -> dict[str, Any]:
    """torch's settings that decide whether a rerun can repeat a result bit for bit, and its TF32 matmuls."""
    out: dict[str, Any] = {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                           "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
                           "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}
    try:
        out["tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
        out["tf32_cudnn"] = bool(torch.backends.cudnn.allow_tf32)
        out["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    except Exception:  # noqa: BLE001 - a torch without these switches
        pass
    return out


def cuda_stack(torch) -> dict[str, Any]:
    """The CUDA runtime torch was built with, its cuDNN and NCCL (a PyPI torch wheel's version names none of them)."""
    out: dict[str, Any] = {"runtime": torch.version.cuda}
    try:
        out["cudnn"] = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001
        out["cudnn"] = None
    try:
        nccl = torch.cuda.nccl.version()
        out["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
    except Exception:  # noqa: BLE001
        out["nccl"] = None
    try:
        out["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    except Exception:  # noqa: BLE001
        pass
    return out


def shaping_environment() -> dict[str, str]:
    """The variables of :data:`SHAPING_ENV` and :data:`SHAPING_ENV_PREFIXES` that are set (none that names a secret)."""
    return {k: v for k, v in sorted(os.environ.items())
            if (k in SHAPING_ENV or k.startswith(SHAPING_ENV_PREFIXES))
            and not any(word in k for word in _SECRET_WORDS)}


def provenance(config: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
    return {
        "config_hash": config_hash(config),
        "config": dict(config),
        "seed": seed if seed is not None else config.get("seed"),
        "git_commit": git_commit(),
        **({"code_changes": changes} if (changes := code_changes()) else {}),
        "packages": package_versions(),
        "hardware": hardware(),
        "environment": shaping_environment(),
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


def data_sha256(paths) -> dict[str, str]:
    """{path: 16 hex digits of :func:`path_sha256`} of data files a job read or wrote (the splits): a result names the
    exact rows behind it, not only their paths."""
    return {str(path): path_sha256(path)[:16] for path in paths}


def path_sha256(path) -> str:
    """:func:`file_sha256` of a file; of a folder (a benchmark kept as a dataset folder), a sha256 over each of its
    files' relative path and sha256, in path order. Hidden files and folders are left out, as the readers leave them
    (giftlab.rowfiles): `hf download --local-dir` keeps its download metadata in .cache/."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in visible_files(path):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def write_sidecar(path, config: Mapping[str, Any], inputs, outputs, seed: int | None = None) -> Path:
    """Provenance for outputs that cannot carry it inside (tables, figures): a ``<stem>.provenance.json`` with the
    record of :func:`write_result` plus the sha256 of every input and output file. Write it after the outputs."""
    return write_result(path, {"inputs": {str(p): file_sha256(p) for p in inputs},
                               "outputs": {str(p): file_sha256(p) for p in outputs}}, config, seed)
