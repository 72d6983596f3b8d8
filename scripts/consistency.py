"""Consistency metrics between two checkpoints A → B (paper §4.4, Table 4, Figure 2).

    python scripts/consistency.py --config '{"seed": 1234, "backbone": "qwen", "run": "gift-b3",
        "stage_pair": "base_sft", "topk": [1, 5, 10, 20, 50], "max_examples": 200,
        "solution_key": "r1_solution_1"}' \
      --model-a models/base/qwen --model-b models/sft/qwen/gift-b3/epoch_3 \
      --val data/splits/val.jsonl --out results/consistency/qwen/gift-b3/base_sft.json

A is the earlier model (Base for ``base_sft``, SFT for ``sft_rl``, a backbone's base for ``base_extra``). The job's
keys, defaults and types: giftlab.jobs.ConsistencyJob (topk, max_examples, max_length, batch_size, chunk_size, layer,
dtype, device, ci_resamples, ...). The tokenizer is model A's unless ``--tokenizer`` names one.
"""

from __future__ import annotations

import logging
import time

import giftlab.cli
from giftlab.cli import ConfigError
from giftlab.grid import STAGE_PAIRS as GRID_STAGE_PAIRS
from giftlab.profiling import emit, matmul_flops, phase
from giftlab.provenance import write_result

log = logging.getLogger("consistency")
# the grid's pairs, and base_extra: a backbone's base -> a checkpoint this pipeline did not train (models.extra)
STAGE_PAIRS = (*GRID_STAGE_PAIRS, "base_extra")


def main(argv=None) -> None:
    import torch

    from giftlab.analysis.consistency import GEOMETRIES, consistency_metrics, make_batches, tokenize_examples
    from giftlab.data import read_problems
    from giftlab.jobs import ConsistencyJob
    from giftlab.models import load_model, load_tokenizer

    p = giftlab.cli.parser(__doc__.splitlines()[0])
    p.add_argument("--model-a", required=True, help="the earlier checkpoint (dir or hub id)")
    p.add_argument("--model-b", required=True, help="the later checkpoint (dir or hub id)")
    p.add_argument("--tokenizer", default=None, help="tokenizer dir or hub id (default: --model-a)")
    p.add_argument("--val", required=True, help="held-out validation jsonl (DeepMath schema)")
    p.add_argument("--out", required=True, help="output JSON (results/consistency/<bb>/<run>/<pair>.json)")
    args = p.parse_args(argv)
    config = giftlab.cli.setup(args)

    job = ConsistencyJob.from_config(config)
    if job.stage_pair not in STAGE_PAIRS:
        raise ConfigError(f"config: stage_pair must be one of {', '.join(STAGE_PAIRS)}, got {job.stage_pair!r}")
    if job.geometry not in GEOMETRIES:
        raise ConfigError(f"config: geometry must be one of {', '.join(GEOMETRIES)}, got {job.geometry!r}")
    ks = [int(k) for k in job.topk]
    device = job.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"

    rows = read_problems(args.val, ("question", job.solution_key))
    tokenizer = load_tokenizer(args.tokenizer or args.model_a)
    examples = tokenize_examples(tokenizer, rows, job.solution_key, job.max_length, job.max_examples)
    batches = make_batches(examples, tokenizer.pad_token_id, job.batch_size)
    with phase("consistency/load"):
        model_a = load_model(args.model_a, dtype=job.dtype).to(device)
        model_b = load_model(args.model_b, dtype=job.dtype).to(device)
    log.info("%s %s %s: %d examples, K=%s, device=%s", job.backbone, job.run, job.stage_pair, len(examples), ks,
             device)

    t0 = time.perf_counter()
    metrics = consistency_metrics(model_a, model_b, batches, ks=ks, layer=job.layer, chunk_size=job.chunk_size,
                                  ci_resamples=job.ci_resamples, seed=job.seed, geometry=job.geometry)
    tokens = sum(len(e["input_ids"]) for e in examples)
    emit("consistency/forward", time.perf_counter() - t0, tokens=tokens,
         flops=matmul_flops(model_a, tokens) + matmul_flops(model_b, tokens))
    payload = {"stage_pair": job.stage_pair, "backbone": job.backbone, "run": job.run,
               "model_a": args.model_a, "model_b": args.model_b, **metrics,
               "seconds": time.perf_counter() - t0}
    write_result(args.out, payload, config, seed=job.seed)
    log.info("cos=%.4f l2=%.3f (%s) kl=%.4f -> %s", metrics["cos"], metrics["l2"], job.geometry, metrics["kl"],
             args.out)


if __name__ == "__main__":
    giftlab.cli.run(main)
