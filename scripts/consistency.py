"""Consistency metrics between two checkpoints A → B (paper §4.4, Table 4, Figure 2).

    python scripts/consistency.py --config '{"seed": 1234, "backbone": "qwen", "run": "gift-b3",
        "stage_pair": "base_sft", "topk": [1, 5, 10, 20, 50], "max_examples": 200,
        "solution_key": "r1_solution_1"}' \
      --model-a models/base/qwen --model-b models/sft/qwen/gift-b3/epoch_3 \
      --val data/splits/val.jsonl --out results/consistency/qwen/gift-b3/base_sft.json

A is the earlier model (Base for ``base_sft``, SFT for ``sft_rl``). Config keys (defaults):
seed (0), backbone, run, stage_pair (required), topk ([1, 5, 10, 20, 50]), max_examples (all),
solution_key ("r1_solution_1"), max_length (1024), batch_size (8), chunk_size (1024),
layer (-1), dtype (null = fp32; e.g. "bfloat16"), device ("auto": cuda when available),
ci_resamples (1000). The tokenizer is model A's unless ``--tokenizer`` names one.
"""

from __future__ import annotations

import logging
import time

import giftlab.cli
from giftlab.cli import ConfigError
from giftlab.provenance import write_result

log = logging.getLogger("consistency")
# base_extra: a backbone's base -> a checkpoint this pipeline did not train (config models.extra)
STAGE_PAIRS = ("base_sft", "sft_rl", "base_extra")


def main(argv=None) -> None:
    import torch

    from giftlab.analysis.consistency import DEFAULT_KS, consistency_metrics, make_batches, tokenize_examples
    from giftlab.data import read_problems
    from giftlab.models import load_model, load_tokenizer

    p = giftlab.cli.parser(__doc__.splitlines()[0])
    p.add_argument("--model-a", required=True, help="the earlier checkpoint (dir or hub id)")
    p.add_argument("--model-b", required=True, help="the later checkpoint (dir or hub id)")
    p.add_argument("--tokenizer", default=None, help="tokenizer dir or hub id (default: --model-a)")
    p.add_argument("--val", required=True, help="held-out validation jsonl (DeepMath schema)")
    p.add_argument("--out", required=True, help="output JSON (results/consistency/<bb>/<run>/<pair>.json)")
    args = p.parse_args(argv)
    config = giftlab.cli.setup(args)

    pair = config.get("stage_pair")
    if pair not in STAGE_PAIRS:
        raise ConfigError(f"config: stage_pair must be one of {', '.join(STAGE_PAIRS)}, got {pair!r}")
    ks = [int(k) for k in config.get("topk", DEFAULT_KS)]
    max_examples = config.get("max_examples")
    max_examples = None if max_examples is None else int(max_examples)
    seed = int(config.get("seed", 0))
    device = config.get("device", "auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"

    solution_key = config.get("solution_key", "r1_solution_1")
    rows = read_problems(args.val, ("question", solution_key))
    tokenizer = load_tokenizer(args.tokenizer or args.model_a)
    examples = tokenize_examples(tokenizer, rows, solution_key,
                                 int(config.get("max_length", 1024)), max_examples)
    batches = make_batches(examples, tokenizer.pad_token_id, int(config.get("batch_size", 8)))
    model_a = load_model(args.model_a, dtype=config.get("dtype")).to(device)
    model_b = load_model(args.model_b, dtype=config.get("dtype")).to(device)
    log.info("%s %s %s: %d examples, K=%s, device=%s", config.get("backbone"), config.get("run"),
             pair, len(examples), ks, device)

    t0 = time.perf_counter()
    metrics = consistency_metrics(model_a, model_b, batches, ks=ks, layer=int(config.get("layer", -1)),
                                  chunk_size=int(config.get("chunk_size", 1024)),
                                  ci_resamples=int(config.get("ci_resamples", 1000)), seed=seed)
    payload = {"stage_pair": pair, "backbone": config.get("backbone"), "run": config.get("run"),
               "model_a": args.model_a, "model_b": args.model_b, **metrics,
               "seconds": time.perf_counter() - t0}
    write_result(args.out, payload, config, seed=seed)
    log.info("cos=%.4f l2=%.3f kl=%.4f -> %s", metrics["cos"], metrics["l2"], metrics["kl"], args.out)


if __name__ == "__main__":
    giftlab.cli.run(main)
