"""The benchmarks an evaluation job has finished, kept for its retry.

One evaluation job samples and grades all of a model's benchmarks (hours at paper scale). Snakemake removes a failed
job's outputs, so a job killed at its time limit or preempted would start every benchmark again on each retry. Each
finished benchmark's two files are therefore also kept in a folder under ``work/evaluate/`` with a stamp of what made
them: the benchmark's settings (less the runtime keys), the benchmark file's sha256, and the model folder's files
(names, sizes, modification times: retraining or pulling a model makes new files, so its old results are never
reused). A retry copies a benchmark back when its stamp matches and evaluates only the rest; the folder goes once
the job finishes.

Within a benchmark (MMLU-Pro: 48k samples, hours of a GPU), the samples generated so far are kept there too
(:class:`GenerationLog`, one JSON line per problem, written after every chunk of prompts: ``eval.save_every_prompts``
under vLLM, each batch of the HF backend), under the same stamp; a retry generates only the problems after them.
Every sample has its own seed (giftlab.evaluation.generation.sample_seed), so the resumed benchmark's samples are
the ones an uninterrupted job draws.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from giftlab.io import atomic_file, write_json_atomic
from giftlab.provenance import path_sha256
from giftlab.runtime_keys import RUNTIME_KEYS, drop_keys

log = logging.getLogger(__name__)

WORK_ROOT = Path("work") / "evaluate"


def work_dir_for(out_dir: Path) -> Path:
    """``work/evaluate/<out_dir>`` for an output folder inside the working directory (Snakemake's jobs:
    ``results/eval/<stage>/<backbone>/<run>``), else ``work/evaluate/<hash of its absolute path>``."""
    out = Path(out_dir).resolve()
    try:
        return WORK_ROOT / out.relative_to(Path.cwd().resolve())
    except ValueError:
        return WORK_ROOT / hashlib.sha256(str(out).encode()).hexdigest()[:16]


def model_stamp(model: Path) -> list[list[Any]]:
    """[name, size, mtime_ns] of every file of a model folder but hidden ones (Snakemake's ``.snakemake_timestamp``,
    which a pull touches): the weights, and what generation reads beside them (``generation_config.json``'s EOS ids,
    the tokenizer and its chat template). Empty for anything but a folder."""
    folder = Path(model)
    if not folder.is_dir():
        return []
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".")]


class FinishedBenchmarks:
    """Keep each finished benchmark's files (:meth:`keep`), give them back to a retry that would make the same
    ones (:meth:`restore`), forget them when the job is done (:meth:`clear`)."""

    def __init__(self, work_dir: Path, model: Path):
        self.dir = Path(work_dir)
        self.model = model_stamp(model)

    def _stamp(self, settings: Mapping[str, Any], bench_file: Path | None) -> dict[str, Any]:
        # less the runtime keys (eval.save_every_prompts, the grading processes): a retry may change them
        settings = drop_keys(settings, RUNTIME_KEYS["eval"])
        return {"settings": json.loads(json.dumps(settings, sort_keys=True, default=str)), "model": self.model,
                "benchmark_sha256": path_sha256(bench_file) if bench_file is not None and Path(bench_file).exists()
                else None}

    def generation_log(self, name: str, settings: Mapping[str, Any], bench_file: Path | None) -> "GenerationLog":
        """Where benchmark ``name``'s samples are kept as they are generated, under this job's stamp."""
        return GenerationLog(self.dir / f"{name}.generated.jsonl", self._stamp(settings, bench_file))

    def _paths(self, name: str) -> tuple[Path, Path, Path]:
        return (self.dir / f"{name}.samples.jsonl", self.dir / f"{name}.summary.json",
                self.dir / f"{name}.stamp.json")

    def keep(self, name: str, settings: Mapping[str, Any], bench_file: Path | None, samples: Path,
             summary: Path) -> None:
        """Copy a finished benchmark's files here, the stamp last (a copy without its stamp is never used), then
        drop its generation log (a kill before the stamp leaves the log to a retry)."""
        kept_samples, kept_summary, stamp = self._paths(name)
        stamp.unlink(missing_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(samples, kept_samples)
        shutil.copyfile(summary, kept_summary)
        write_json_atomic(stamp, self._stamp(settings, bench_file))
        (self.dir / f"{name}.generated.jsonl").unlink(missing_ok=True)  # its whole files replace its partial log

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


class GenerationLog:
    """The samples of one benchmark generated so far: a stamp line, then one line per problem in the benchmark's
    order (``prompt``: the sha256 of its prompt; ``seconds``: per sample; ``samples``: [text, tokens, finish reason,
    seed] each), appended and fsynced after each chunk. :meth:`read` gives back the problems a retry can keep."""

    def __init__(self, path: Path, stamp: Mapping[str, Any]):
        self.path = Path(path)
        self.stamp = json.loads(json.dumps(stamp, sort_keys=True, default=str))

    def read(self, prompts: list[str]) -> tuple[list[list], list[float]]:
        """(samples per problem, seconds per sample) of the first problems of ``prompts`` an earlier try generated
        under this stamp; the log is cut to them (a line torn by a kill, another stamp: the rest is dropped)."""
        from giftlab.evaluation.generation import Sample

        generated, seconds, keep = [], [], 0
        try:
            with open(self.path, "rb") as fh:
                lines = fh.read().split(b"\n")
            if json.loads(lines[0]) != {"stamp": self.stamp}:
                raise ValueError("another stamp")
            keep = len(lines[0]) + 1
            for line, prompt in zip(lines[1:-1], prompts):  # the last piece: "" or a line cut short
                row = json.loads(line)
                if row["prompt"] != _sha(prompt):
                    break
                generated.append([Sample(*sample) for sample in row["samples"]])
                seconds.append(float(row["seconds"]))
                keep += len(line) + 1
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            pass
        if keep == 0:
            self._write(json.dumps({"stamp": self.stamp}) + "\n", "w")
        else:
            os.truncate(self.path, keep)
        if generated:
            log.info("%s: %d problems generated by an earlier try, kept", self.path, len(generated))
        return generated, seconds

    def append(self, prompts: list[str], samples: list[list], seconds: float) -> None:
        """Record one chunk: ``samples[i]`` of ``prompts[i]``, ``seconds`` per sample."""
        self._write("".join(json.dumps({"prompt": _sha(prompt), "seconds": seconds, "samples": [
            [s.text, s.num_tokens, s.finish_reason, s.seed] for s in per]}) + "\n"
            for prompt, per in zip(prompts, samples)), "a")

    def _write(self, text: str, mode: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, mode, encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
