"""Shared test utilities: run Snakemake from the repo's Snakefile in an isolated directory."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

REPO = Path(__file__).resolve().parents[1]


def two_process_ranks(script: str, *args, out: Path, env: dict[str, str] | None = None) -> list[dict]:
    """tests/dist/<script> under ``torchrun --nproc_per_node 2`` (CPU, gloo) with ``*args`` and ``out``; the
    ``<out>/rank<k>.json`` each process writes."""
    import json

    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "dist" / script), *map(str, args), str(out)]
    proc = subprocess.run(cmd, env=env or venv_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def venv_env(**extra: str) -> dict[str, str]:
    """Environment whose PATH starts with this interpreter's bin dir (rules call `python`), plus ``extra``."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return {**env, **extra}


def paper_hub_cache(root: Path) -> Path:
    """A Hugging Face cache holding config/paper.yaml's base models, as `hf download` leaves it (docs/scale.md,
    step 2; config.json only): the paper grid plans offline (HF_HUB_OFFLINE=1) only where they are cached."""
    import yaml

    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    for spec in paper["backbones"].values():
        snapshot = root / f"models--{spec['path'].replace('/', '--')}" / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / "config.json").write_text("{}")
    return root


def snakemake(workdir: Path, *args: str, configfiles=(), timeout: int = 900, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"),
           "--directory", str(workdir)]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    cmd += list(args)
    return subprocess.run(cmd, cwd=workdir, env=venv_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout)


def slurm_controller_stall(timeout: float = 2.0, env: dict[str, str] | None = None) -> str | None:
    """A one-line warning when SLURM's clients are installed but no controller answers them, else None.

    Every `snakemake` call then waits ~10 s before planning: the SLURM executor plugin runs `scontrol show config`
    at import (docs/slurm-test-cluster.md, "Known cost"). The check runs that command with a short timeout."""
    try:
        subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=timeout, env=env)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        return (f"SLURM: `scontrol show config` found no controller within {timeout:g} s, so every `snakemake` "
                "call here waited ~10 s for it (docs/slurm-test-cluster.md, 'Known cost'): start the test "
                "cluster (bash scripts/slurm_cluster.sh start), or remove SLURM's client packages")
    return None


def write_override(path: Path, override: dict) -> Path:
    path.write_text(yaml.safe_dump(override))
    return path


def run_specs(betas=(0.5, 1, 3, 10), seeds=None) -> dict:
    """The plan's run table (giftlab.plan.Plan.run_table) for a grid with every objective, GIFT at ``betas`` and
    both Direct baselines (``seeds``: config ``seeds``): what report jobs receive as ``run_specs``."""
    from giftlab.config import deep_merge, load_config
    from giftlab.objectives import OBJECTIVES
    from giftlab.plan import Plan

    config = deep_merge(load_config(REPO / "params.yaml"), {
        "sft": {"methods": list(OBJECTIVES), "gift_betas": list(betas), "direct_sft": True},
        "grpo": {"direct_rl": True}, **({"seeds": list(seeds)} if seeds else {})})
    return Plan(config).run_table()


# forked, not spawned: the processes share what the test process imported (a spawned one imports the training stack
# again)
CONTEXT = multiprocessing.get_context("fork")


def together(target, n: int, *args) -> dict:
    """``target(rank, results, *args)`` in ``n`` forked processes at once; {rank: what each put in ``results``}."""
    results = CONTEXT.Queue()
    # daemons, ended below whatever happens: a regression that hangs them fails the test instead of holding pytest
    procs = [CONTEXT.Process(target=target, args=(rank, results, *args), daemon=True) for rank in range(n)]
    try:
        for p in procs:
            p.start()
        outcome = dict(results.get(timeout=120) for _ in procs)
        for p in procs:
            p.join(timeout=60)
        return outcome
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()


def patch_trl_vllm(monkeypatch, llm_class):
    """TRL's colocated vLLM generation with ``llm_class`` for vLLM's ``LLM`` (CPU tests: no vLLM here), sampling
    params as a namespace of their keywords and no weight sync. A generator fixture's body: yield after it, then
    :func:`restore_environ` with what it returned (TRL sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    for vLLM)."""
    import trl.generation.vllm_generation as vg

    monkeypatch.setattr(vg, "is_vllm_available", lambda *a, **k: True)
    monkeypatch.setattr(vg, "LLM", llm_class, raising=False)
    monkeypatch.setattr(vg, "SamplingParams", lambda **kw: SimpleNamespace(**kw), raising=False)
    monkeypatch.setattr(vg.VLLMGeneration, "sync_weights", lambda self: None)
    return dict(os.environ)


def restore_environ(environ: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(environ)


def build_rehearsal(out: Path, problems: int) -> Path:
    """``scripts/make_rehearsal.py --out OUT --problems N`` in this process: the paper-shaped stand-ins (Qwen2.5- and
    Llama-3.1-like checkpoints and tokenizers, DeepMath-schema data) under ``out``, returned."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_rehearsal", REPO / "scripts" / "make_rehearsal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(out), "--problems", str(problems)])
    return out
