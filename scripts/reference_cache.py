"""Rule `reference_cache`: run the frozen base over one SFT training split once and store its log-probs.

    python scripts/reference_cache.py --config '{"seed": 1234, "backbone": "qwen", "split": "sft",
        "solution_key": "r1_solution_1", "max_length": 256, "top_k": 64}' \
      --base models/base/qwen --split data/splits/sft.jsonl --work work/reference/qwen/sft \
      --out results/sft/reference/qwen/sft.safetensors --summary results/sft/reference/qwen/sft.json

Per response token: the exact log p_base(y*), the top_k log-probs and their ids (giftlab.training.reference, which
also states the error bound of the target built from them). SFT runs with ``sft.reference: cached`` read this file
instead of running the base at every step of every epoch. The base runs on the job's GPU where there is one. The
summary records the tokens, the bytes, the tail mass (mean, max), the device and the seconds it took.

Resumable (giftlab.training.reference_file): the file is filled in --work and its rows on disk recorded every
2 minutes; on SIGTERM / SIGUSR1 (SLURM's preemption or time limit) the job records them and exits 75 with no output,
and a rerun, after a kill -9 too, continues from the last record.
"""

import time

from giftlab import cli
from giftlab.data import read_problems
from giftlab.io import remove_stale_temps
from giftlab.jobs import ReferenceCacheJob
from giftlab.models import load_model, load_tokenizer, local_checkpoint
from giftlab.provenance import file_sha256, write_result


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--base", required=True, help="base model directory or hub id (the SFT runs' reference)")
    p.add_argument("--split", required=True, help="the SFT training split (DeepMath-schema jsonl)")
    p.add_argument("--out", required=True, help="output: the cache (safetensors)")
    p.add_argument("--summary", required=True, help="output: summary JSON with provenance")
    p.add_argument("--work", required=True, help="the cache while it is written, and its progress (not an output)")
    args = p.parse_args(argv)
    config = cli.setup(args)
    job = ReferenceCacheJob.from_config(config)
    remove_stale_temps(args.out, args.summary)  # what killed attempts of this job left
    import torch

    from giftlab.training.preemption import Preempted, StopSignals, preempted_exit
    from giftlab.training.reference import ReferenceCache, tail_mass_summary, weights_fingerprint, write_reference_cache

    rows = read_problems(args.split, ("question", job.solution_key))
    base = local_checkpoint(args.base)
    # the job's GPU (paper profile: a 7-8B base over the whole split), else the CPU
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()
    try:
        with StopSignals() as signals:
            writer, resumed = write_reference_cache(
                load_model(base).to(device), load_tokenizer(base), rows, work=args.work,
                solution_key=job.solution_key, max_length=job.max_length, top_k=job.top_k,
                batch_size=job.batch_size, stop=lambda: signals.requested is not None,
                meta={"base": weights_fingerprint(base), "split_sha256": file_sha256(args.split)})
    except Preempted as exc:
        preempted_exit(exc)
    seconds = time.time() - t0
    # read from the work folder: the cache reaches its output only with its summary (a kill in between: the rerun
    # finds every row on disk and only moves it)
    cache = ReferenceCache.load(writer.file)
    tail_mean, tail_max = tail_mass_summary(cache)
    summary = {"backbone": job.backbone, "split": job.split, "rows": cache.n_rows, "tokens": cache.n_tokens,
               "top_k": cache.meta["top_k"], "vocab_size": cache.meta["vocab_size"],
               "bytes": writer.file.stat().st_size, "tail_mass_mean": tail_mean, "tail_mass_max": tail_max,
               "seconds": round(seconds, 2), "resumed_from_row": resumed, "device": device,
               "cache_sha256": file_sha256(writer.file)}
    del cache
    writer.finish(args.out)
    write_result(args.summary, summary, config)


if __name__ == "__main__":
    cli.run(main)
