"""Rule `reference_cache`: run the frozen base over one SFT training split once and store its log-probs.

    python scripts/reference_cache.py --config '{"seed": 1234, "backbone": "qwen", "split": "sft",
        "solution_key": "r1_solution_1", "max_length": 256, "top_k": 64}' \
      --base models/base/qwen --split data/splits/sft.jsonl \
      --out results/sft/reference/qwen/sft.safetensors --summary results/sft/reference/qwen/sft.json

Per response token: the exact log p_base(y*), the top_k log-probs and their ids (giftlab.training.reference, which
also states the error bound of the target built from them). SFT runs with ``sft.reference: cached`` read this file
instead of running the base at every step of every epoch. The base runs on the job's GPU where there is one. The
summary records the tokens, the bytes, the tail mass (mean, max), the device and the seconds it took.
"""

import logging
import time
from pathlib import Path

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
    args = p.parse_args(argv)
    config = cli.setup(args)
    job = ReferenceCacheJob.from_config(config)
    # what killed attempts of this job left (a cache-sized temporary each: SIGKILL or SLURM's SIGTERM skip the cleanup)
    for output in (args.out, args.summary):
        for stale in remove_stale_temps(output):
            logging.info("removed %s: a killed attempt's temporary", stale)
    import torch

    from giftlab.training.reference import build_reference_cache, tail_mass_summary, weights_fingerprint

    rows = read_problems(args.split, ("question", job.solution_key))
    base = local_checkpoint(args.base)
    # the job's GPU (paper profile: a 7-8B base over the whole split), else the CPU
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()
    cache = build_reference_cache(load_model(base).to(device), load_tokenizer(base), rows,
                                  solution_key=job.solution_key,
                                  max_length=job.max_length, top_k=job.top_k, batch_size=job.batch_size,
                                  meta={"base": weights_fingerprint(base), "split_sha256": file_sha256(args.split)})
    seconds = time.time() - t0
    cache.save(args.out)
    tail_mean, tail_max = tail_mass_summary(cache)
    write_result(args.summary, {
        "backbone": job.backbone, "split": job.split, "rows": cache.n_rows, "tokens": cache.n_tokens,
        "top_k": cache.meta["top_k"], "vocab_size": cache.meta["vocab_size"], "bytes": Path(args.out).stat().st_size,
        "tail_mass_mean": tail_mean, "tail_mass_max": tail_max,
        "seconds": round(seconds, 2), "device": device, "cache_sha256": file_sha256(args.out)}, config)


if __name__ == "__main__":
    cli.run(main)
