"""``generate`` on an FSDP2-sharded policy: units gathered at every decode step vs kept for the whole call.

    .venv/bin/python benchmarks/fsdp_generate.py [--processes 2] [--hidden 256] [--layers 4] [--new-tokens 64]

Runs itself under ``torchrun`` (CPU, gloo). A Qwen2 model is sharded with ``fully_shard`` (one unit per decoder layer
and the root, bf16 compute over fp32 master weights, as the paper's launch) and each process samples ``--batch``
sequences of ``--new-tokens`` tokens (greedy), alternately with the units resharded after every forward (FSDP's
setting in training: an all-gather per unit per decode step) and inside :func:`gathered_for_generation` (each unit
gathered once, kept until the end). Prints the best of ``--repeats`` for each, their ratio, and whether the tokens
are identical. On CPU the all-gathers are gloo's over shared memory; on GPUs the per-step traffic is the whole bf16
model per GPU per token (arithmetic in giftlab.training.sharded), not measured here.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _torchrun import run_workers  # noqa: E402


def worker(args) -> None:
    import json

    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from giftlab.models import build_tiny_model
    from giftlab.training.sharded import gathered_for_generation

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = build_tiny_model("qwen2", vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                             num_attention_heads=4, intermediate_size=2 * args.hidden, seed=0)
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16)
    sharded = copy.deepcopy(model)
    for layer in sharded.model.layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(sharded, mp_policy=policy)
    prompt = torch.randint(3, args.vocab, (args.batch, 16), generator=torch.Generator().manual_seed(rank))

    def generate(m):
        return m.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new_tokens,
                          min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)

    times = {"per_step": [], "kept": []}
    tokens = {}
    with torch.no_grad():
        for _ in range(args.repeats):
            dist.barrier()
            t0 = time.perf_counter()
            tokens["per_step"] = generate(sharded)
            times["per_step"].append(time.perf_counter() - t0)
            dist.barrier()
            t0 = time.perf_counter()
            with gathered_for_generation(sharded) as m:
                tokens["kept"] = generate(m)
            times["kept"].append(time.perf_counter() - t0)
    if rank == 0:
        Path(args.out).write_text(json.dumps({
            "processes": dist.get_world_size(), "hidden": args.hidden, "layers": args.layers, "batch": args.batch,
            "new_tokens": args.new_tokens, "per_step_s": min(times["per_step"]), "kept_s": min(times["kept"]),
            "identical": torch.equal(tokens["per_step"], tokens["kept"])}))
    dist.destroy_process_group()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--batch", type=int, default=4, help="sequences per process")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    r = run_workers(__file__, args.processes, list(argv if argv is not None else sys.argv[1:]))
    print(f"{r['processes']} processes (CPU, gloo), Qwen2 hidden {r['hidden']} x {r['layers']} layers, "
          f"{r['batch']} sequences x {r['new_tokens']} new tokens per process, best of {args.repeats}")
    print(f"units gathered at every decode step: {r['per_step_s']:.3f} s")
    print(f"units kept for the whole generate:   {r['kept_s']:.3f} s")
    print(f"ratio (per step / kept): {r['per_step_s'] / r['kept_s']:.2f}x; tokens identical: {r['identical']}")


if __name__ == "__main__":
    main()
