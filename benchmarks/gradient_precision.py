"""How exactly FSDP2 sums a step's micro-batch gradients: accelerate's bf16 policy vs verl's fp32 reduction.

    .venv/bin/python benchmarks/gradient_precision.py [--processes 2] [--micro-batches 8] [--hidden 64] [--json OUT]

Runs itself under ``torchrun`` (CPU, gloo). A tiny Qwen2 model with fp32 master weights is sharded with torch's
``fully_shard`` (one unit per decoder layer and the root, as accelerate's ``fsdp_version: 2``) under bf16 compute,
and each process runs ``--micro-batches`` micro-batches of its own tokens (the loss scaled by 1/micro-batches, as the
Trainer scales it) under four settings: the reduce dtype accelerate gives (bf16) or verl's (fp32,
:func:`giftlab.training.gradient_precision.fp32_reduction`), each with the Trainer's ``no_sync`` on every micro-batch
but the last or with a synchronisation every micro-batch (:data:`SYNC_EACH_MICRO_BATCH`). The step's gradient is
compared with the exact (fp64) mean over processes of the sum of the same bf16 micro-batch gradients, computed on
an unsharded bf16 copy: what is measured is the rounding of the reduction and accumulation alone.
Prints each setting's relative error ``||g - exact|| / ||exact||`` and the worst relative error of one parameter.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _torchrun import run_workers  # noqa: E402

SETTINGS = [  # (name, reduce in fp32, synchronise every micro-batch)
    ("accelerate bf16 policy, no_sync (before)", False, False),
    ("bf16 reduce, sync every micro-batch", False, True),
    ("fp32 reduce, no_sync", True, False),
    ("fp32 reduce, sync every micro-batch (verl, giftlab)", True, True),
]


def _tokens(seed: int, rows: int, width: int, vocab: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (rows, width), generator=g)


def worker(args) -> None:
    import torch
    import torch.distributed as dist
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import fully_shard

    from giftlab.models import build_tiny_model
    from giftlab.training.gradient_precision import fp32_reduction

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build_tiny_model("qwen2", vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                             num_attention_heads=4, intermediate_size=2 * args.hidden, tie_word_embeddings=False,
                             seed=0)
    batches = [_tokens(1000 * rank + i, args.rows, args.width, args.vocab) for i in range(args.micro_batches)]

    def loss_of(m, ids):
        return m(input_ids=ids, labels=ids).loss / args.micro_batches

    # the exact sum of this process's bf16 micro-batch gradients, then the mean over processes (FSDP averages)
    low = copy.deepcopy(model)
    for p in low.parameters():  # parameters only: FSDP's param_dtype leaves buffers (RoPE's inv_freq) in fp32
        p.data = p.data.to(torch.bfloat16)
    exact = {name: torch.zeros_like(p, dtype=torch.float64) for name, p in low.named_parameters()}
    for ids in batches:
        low.zero_grad()
        loss_of(low, ids).backward()
        for name, p in low.named_parameters():
            exact[name] += p.grad.double()
    for g in exact.values():
        dist.all_reduce(g)
        g /= world
    norm = torch.sqrt(sum((g ** 2).sum() for g in exact.values())).item()

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2)
    plugin.set_mixed_precision("bf16")  # what `accelerate launch` with mixed_precision: bf16 gives FSDP2
    results = []
    for name, reduce_fp32, sync_each in SETTINGS:
        policy = fp32_reduction(plugin.mixed_precision_policy) if reduce_fp32 else plugin.mixed_precision_policy
        sharded = copy.deepcopy(model)
        for layer in sharded.model.layers:
            fully_shard(layer, mp_policy=policy)
        fully_shard(sharded, mp_policy=policy)
        for i, ids in enumerate(batches):
            sharded.set_requires_gradient_sync(sync_each or i == len(batches) - 1)
            loss_of(sharded, ids).backward()
        err_sq, worst = 0.0, 0.0
        for pname, p in sharded.named_parameters():
            got = p.grad.full_tensor().double()
            want = exact[pname]
            err_sq += ((got - want) ** 2).sum().item()
            worst = max(worst, ((got - want).norm() / want.norm().clamp_min(1e-30)).item())
        results.append({"setting": name, "reduce_fp32": reduce_fp32, "sync_each_micro_batch": sync_each,
                        "relative_error": err_sq ** 0.5 / norm, "worst_parameter_relative_error": worst})
    if rank == 0:
        Path(args.out).write_text(json.dumps({"processes": world, "micro_batches": args.micro_batches,
                                              "hidden": args.hidden, "layers": args.layers, "results": results},
                                             indent=1))
    dist.destroy_process_group()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--micro-batches", type=int, default=8)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--rows", type=int, default=2, help="sequences per micro-batch")
    p.add_argument("--width", type=int, default=64, help="tokens per sequence")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    passed = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--json" and a != str(args.json)]
    report = run_workers(__file__, args.processes, passed)
    print(f"{report['processes']} processes x {report['micro_batches']} micro-batches, Qwen2 hidden "
          f"{report['hidden']}, {report['layers']} layers, bf16 compute over fp32 master weights")
    print(f"{'setting':<55} {'relative error':>15} {'worst parameter':>16}")
    for r in report["results"]:
        print(f"{r['setting']:<55} {r['relative_error']:>15.2e} {r['worst_parameter_relative_error']:>16.2e}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
