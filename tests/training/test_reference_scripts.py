"""The cached reference through its scripts, as the `reference_cache` and `sft` rules call them: the cache is built
once, a GIFT run reads it (and trains like the live reference when the cache keeps every token), and a run on
other data than the cache's is refused in one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from helpers import REPO
from test_preemption import ROWS, env, sft_args

pytestmark = pytest.mark.slow  # scheduled early on the two workers (tests/conftest.py)

CACHE_JOB = {"seed": 0, "backbone": "tiny", "split": "sft", "solution_key": "r1_solution_1", "max_length": 96,
             "top_k": 1000, "batch_size": 4}
SETTINGS = {"epochs": 1, "batch_size": 4, "lr": 1e-3, "max_length": 96, "logging_steps": 1}


def script(name, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / f"{name}.py"), *map(str, args)], env=env(),
                          capture_output=True, text=True, timeout=300)


def gift_args(base_dir, data, root, reference: str, caches=()):
    args = sft_args(base_dir, data, root, {**SETTINGS, "reference": reference})
    config = json.loads(args[1])
    args[1] = json.dumps({**config, "run": "gift-b3", "method": "gift", "beta": 3.0})
    return args + ["--reference-cache", *map(str, caches)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:16]))
    (root / "other.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[4:20]))
    prompted = [{**r, "question": r["question"].replace("Start", "Begin")} for r in ROWS[:16]]  # as long: no truncation
    (root / "prompted.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prompted))  # same responses
    (root / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[16:]))
    return root


def build(base_dir, split, out):
    proc = script("reference_cache", "--config", json.dumps(CACHE_JOB), "--base", base_dir, "--split", split,
                  "--work", out.parent / "work", "--out", out, "--summary", out.with_suffix(".json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def train_cache(base_dir, data, tmp_path_factory):
    """The base's log-probs over train.jsonl, built once by the script: (cache file, its summary)."""
    out = tmp_path_factory.mktemp("cache") / "sft.safetensors"
    return out, build(base_dir, data / "train.jsonl", out)


def test_a_gift_run_reads_the_cache_and_matches_the_live_reference(base_dir, data, train_cache, tmp_path):
    cache, summary = train_cache
    assert summary["rows"] == 16 and summary["tokens"] > 0 and summary["tail_mass_max"] < 1e-6  # k >= V: exact
    assert summary["provenance"]["config"]["top_k"] == 1000
    # the base runs on the job's GPU where there is one (benchmarks/device_cluster_check.sh checks "cuda")
    assert summary["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    live = script("sft", *gift_args(base_dir, data, tmp_path / "live", "exact"))
    cached = script("sft", *gift_args(base_dir, data, tmp_path / "cached", "cached", [cache]))
    assert live.returncode == 0 and cached.returncode == 0, (live.stderr + cached.stderr)[-3000:]
    epochs = [json.loads((tmp_path / run / "out" / "metrics.json").read_text())["epochs"][0] for run in ("live", "cached")]
    assert epochs[1]["val_loss"] == pytest.approx(epochs[0]["val_loss"], rel=1e-4)
    assert epochs[1]["target_mass_y"] == pytest.approx(epochs[0]["target_mass_y"], rel=1e-4)


@pytest.mark.parametrize("train", ["other.jsonl", "prompted.jsonl"])
def test_a_cache_of_other_data_stops_the_run_in_one_line(base_dir, data, train_cache, tmp_path, train):
    """other.jsonl: other rows; prompted.jsonl: the same responses under other prompts (data.instruction changed),
    which every row's token count and labels let through: the split's sha256 the cache records refuses it."""
    cache, _ = train_cache  # train.jsonl's, given to a run that trains on another file
    args = gift_args(base_dir, data, tmp_path / "run", "cached", [cache])
    args[args.index("--train") + 1] = str(data / train)
    proc = script("sft", *args)
    assert proc.returncode == 1
    errors = re.findall(r"error: [^\r\n]*", proc.stderr)  # (after a progress bar on the same line)
    assert len(errors) == 1 and str(cache) in errors[0] and "other data" in errors[0] and "rebuild it" in errors[0], \
        proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "out" / "metrics.json").exists()


PEAK = """import runpy, sys, threading, time
from transformers.models.qwen2 import modeling_qwen2  # imported before the baseline: only the script's work counts
import giftlab.training.reference


def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))


def sample_anonymous():  # no kernel counter keeps the peak of RssAnon: sampled every 5 ms
    global anon_peak
    while True:
        anon_peak = max(anon_peak, status("RssAnon:"))
        time.sleep(0.005)


sys.argv = sys.argv[1:]
before, anon_before = status("VmRSS:"), status("RssAnon:")
anon_peak = anon_before
threading.Thread(target=sample_anonymous, daemon=True).start()
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
runpy.run_path(sys.argv[0], run_name="__main__")
print("grew", status("VmHWM:") - before, "anonymous", anon_peak - anon_before)
"""


def test_building_the_cache_holds_no_copy_of_it_in_host_memory(tmp_path):
    """At paper scale the cache is tens of GB (10k responses of up to 8k tokens: ~4.5e7 tokens x 520 B at k = 64,
    ~23 GB) and the job asks for 64 GB: the builder appended per-batch tensors and concatenated them (2x the cache),
    and the summary's tail mass widened the whole top_ids to int64 and logsumexp'd a copy of top_logp (~2.9x in
    all). The cache is now written into a memory-mapped file (reference_file.CacheWriter), so the job's anonymous
    memory holds none of it (the mapped pages are page cache, flushed every 2 minutes). Measured as the script's
    peak above its memory after the imports, over the cache's size: anonymous memory 0.4 (buffers of a fixed size:
    a batch's logits, the summary's 4M-entry chunks; ~120 MB here, nothing at paper scale's tens of GB), 1.6 when
    the cache was held in memory, 2.7 before that; resident memory with the mapped pages 1.4. A base with a wider
    (mostly unused) vocabulary, all of it kept (k = V = 1024), makes each response token 8 KB of cache, so short rows
    make a large cache quickly."""
    from giftlab.models import build_tiny_model
    from giftlab.tinyworld.tokenizer import build_tokenizer

    base = tmp_path / "wide_base"
    tok = build_tokenizer(base)
    build_tiny_model("qwen2", vocab_size=1024, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, tokenizer=tok, seed=0).save_pretrained(base)
    split, out = tmp_path / "split.jsonl", tmp_path / "cache.safetensors"
    split.write_text("".join(json.dumps({"question": f"Start with {i}.", "r1_solution_1": f"x={i}+1; " * 6}) + "\n"
                             for i in range(700)))
    job = {**CACHE_JOB, "top_k": 1024, "batch_size": 64}
    proc = subprocess.run([sys.executable, "-c", PEAK, str(REPO / "scripts" / "reference_cache.py"),
                           "--config", json.dumps(job), "--base", str(base), "--split", str(split),
                           "--work", str(tmp_path / "work"), "--out", str(out),
                           "--summary", str(out.with_suffix(".json"))],
                          env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = re.search(r"grew (\d+) anonymous (\d+)", proc.stdout)
    (grew, anonymous), size = map(int, measured.groups()), out.stat().st_size
    print(f"cache {size / 1e6:.0f} MB: resident +{grew / 1e6:.0f} MB, anonymous +{anonymous / 1e6:.0f} MB")
    assert size > 250e6
    assert anonymous < 0.6 * size, f"building a {size / 1e6:.0f} MB cache took {anonymous / 1e6:.0f} MB of memory"
    assert grew < 1.5 * size, f"building a {size / 1e6:.0f} MB cache kept {grew / 1e6:.0f} MB resident"


def test_a_rerun_removes_the_temporaries_killed_attempts_left(base_dir, data, tmp_path):
    """SIGKILL, or SLURM's SIGTERM (no handler in this job), skips atomic_file's cleanup: each killed attempt left a
    cache-sized `.sft.safetensors.<random>.tmp` beside the output (tens of GB at paper scale), and no rerun removed
    it. The next attempt removes its own outputs' temporaries, and nothing else."""
    out = tmp_path / "sft.safetensors"
    stale = [tmp_path / ".sft.safetensors.b_56hxta.tmp", tmp_path / ".sft.safetensors.h0n76wm7.tmp",
             tmp_path / ".sft.json.k2j4_9xq.tmp"]
    others = [tmp_path / ".rl.safetensors.b_56hxta.tmp", tmp_path / ".sft.safetensors.tmp", tmp_path / "notes.tmp"]
    for path in stale + others:
        path.write_bytes(b"torn")
    build(base_dir, data / "train.jsonl", out)
    assert not [p.name for p in stale if p.exists()]
    assert all(p.exists() for p in others)


SIGNAL_AT_BATCH = """import os, runpy, signal, sys
import giftlab.models

load = giftlab.models.load_model


def load_and_signal(*args, **kwargs):  # SIGTERM to this job during its second batch's forward
    model = load(*args, **kwargs)
    calls = []

    def hook(module, inputs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    model.register_forward_pre_hook(hook)
    return model


giftlab.models.load_model = load_and_signal  # before the script's `from giftlab.models import load_model`
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_preempted_cache_job_exits_75_without_outputs_and_its_rerun_resumes(base_dir, data, train_cache, tmp_path):
    """SLURM's SIGTERM (preemption, time limit) during the pass: the job records the rows on disk and exits 75 with
    no output; the rerun (Snakemake's retry) computes only the rest and writes the cache an uninterrupted job
    writes, byte for byte (at paper scale a pass is ~25 min of a GPU, which a preemption used to restart)."""
    cache, summary = train_cache
    out, work = tmp_path / "sft.safetensors", tmp_path / "work"
    args = ["--config", json.dumps(CACHE_JOB), "--base", base_dir, "--split", data / "train.jsonl", "--work", work,
            "--out", out, "--summary", out.with_suffix(".json")]
    signalled = subprocess.run([sys.executable, "-c", SIGNAL_AT_BATCH, str(REPO / "scripts" / "reference_cache.py"),
                                *map(str, args)], env=env(), capture_output=True, text=True, timeout=300)
    assert signalled.returncode == 75, signalled.stderr[-3000:]
    assert "preempted at row 8: progress saved, rerun resumes" in signalled.stderr  # batches of 4: after the 2nd
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert json.loads((work / "progress.json").read_text())["rows"] == 8
    rerun = script("reference_cache", *args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = json.loads(out.with_suffix(".json").read_text())
    assert resumed["resumed_from_row"] == 8 and summary["resumed_from_row"] == 0
    assert out.read_bytes() == cache.read_bytes() and resumed["cache_sha256"] == summary["cache_sha256"]
    assert not (work / "progress.json").exists()
