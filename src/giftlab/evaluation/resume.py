"""The benchmarks an evaluation job has finished, kept for its retry.

One evaluation job samples and grades all of a model's benchmarks (hours at paper scale). Snakemake removes a failed
job's outputs, so a job killed at its time limit or preempted would start every benchmark again on each retry. Each
finished benchmark's two files are therefore also kept in a folder under ``work/evaluate/`` with a stamp of what
made them: the benchmark's settings, the benchmark file's sha256, and the model's weight files (names, sizes,
modification times: retraining or pulling a model makes new files, so its old results are never reused). A retry
copies a benchmark back when its stamp matches and evaluates only the rest; the folder goes once the job finishes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Mapping

from giftlab.io import atomic_file, write_json_atomic
from giftlab.provenance import path_sha256

WORK_ROOT = Path("work") / "evaluate"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def work_dir_for(out_dir: Path) -> Path:
    """``work/evaluate/<out_dir>`` for an output folder inside the working directory (Snakemake's jobs:
    ``results/eval/<stage>/<backbone>/<run>``), else ``work/evaluate/<hash of its absolute path>``."""
    out = Path(out_dir).resolve()
    try:
        return WORK_ROOT / out.relative_to(Path.cwd().resolve())
    except ValueError:
        return WORK_ROOT / hashlib.sha256(str(out).encode()).hexdigest()[:16]


def model_stamp(model: Path) -> list[list[Any]]:
    """[name, size, mtime_ns] of every weight file of a model folder (empty for anything else)."""
    folder = Path(model)
    if not folder.is_dir():
        return []
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix in WEIGHT_SUFFIXES]


class FinishedBenchmarks:
    """Keep each finished benchmark's files (:meth:`keep`), give them back to a retry that would make the same
    ones (:meth:`restore`), forget them when the job is done (:meth:`clear`)."""

    def __init__(self, work_dir: Path, model: Path):
        self.dir = Path(work_dir)
        self.model = model_stamp(model)

    def _stamp(self, settings: Mapping[str, Any], bench_file: Path | None) -> dict[str, Any]:
        return {"settings": json.loads(json.dumps(settings, sort_keys=True, default=str)), "model": self.model,
                "benchmark_sha256": path_sha256(bench_file) if bench_file is not None and Path(bench_file).exists()
                else None}

    def _paths(self, name: str) -> tuple[Path, Path, Path]:
        return (self.dir / f"{name}.samples.jsonl", self.dir / f"{name}.summary.json",
                self.dir / f"{name}.stamp.json")

    def keep(self, name: str, settings: Mapping[str, Any], bench_file: Path | None, samples: Path,
             summary: Path) -> None:
        """Copy a finished benchmark's files here, the stamp last (a copy without its stamp is never used)."""
        kept_samples, kept_summary, stamp = self._paths(name)
        stamp.unlink(missing_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(samples, kept_samples)
        shutil.copyfile(summary, kept_summary)
        write_json_atomic(stamp, self._stamp(settings, bench_file))

    def restore(self, name: str, settings: Mapping[str, Any], bench_file: Path | None, samples: Path,
                summary: Path) -> bool:
        """Copy a kept benchmark back to ``samples`` / ``summary`` if its stamp is this job's; True if done."""
        kept_samples, kept_summary, stamp = self._paths(name)
        if not (stamp.is_file() and kept_samples.is_file() and kept_summary.is_file()):
            return False
        try:
            recorded = json.loads(stamp.read_text())
            json.loads(kept_summary.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        if recorded != self._stamp(settings, bench_file):
            return False
        for source, target in ((kept_samples, samples), (kept_summary, summary)):
            with atomic_file(target) as tmp:
                shutil.copyfile(source, tmp)
        return True

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
