"""The cached reference (sft.reference: cached): its error on a validation split and its SFT epoch time vs SFT's.

    .venv/bin/python benchmarks/reference_cache.py --base models/base/qwen --train data/splits/sft.jsonl \
        --val data/splits/val.jsonl [--ks 1 4 16 64] [--betas 1 3 10] [--repeats 3]

Run in a workspace where the tiny default has built ``models/base/qwen`` and ``data/splits`` (e.g.
``snakemake models/base/qwen data/splits/sft.jsonl``). Prints two tables:

1. Approximation, per top-k, over every response token of ``--val``: the tail mass m the cache spreads evenly
   (TV(r, r~) <= m), GIFT's bound (1 - b) m on TV(pi*, pi~*) per β, and the measured KL(pi* || pi~*) (and
   KL(r || r~), what SFT + KD and ASFT see), mean and max.
2. One SFT epoch over ``--train`` with the settings of ``--config`` (params.yaml: batch, lr, max_length), side by
   side in this process: plain SFT, GIFT with the live frozen base (exact), GIFT reading the cache, and the cache's
   own build time (once per split, not per epoch). Each timing is the median of ``--repeats`` runs taken in
   rotation, so a busy machine slows all columns alike; the ratios to SFT are the result.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def approximation(model, tok, rows, solution_key, max_length, ks, betas) -> list[dict]:
    """Per k: tail mass and GIFT's bound and measured KL of the cached target, over every validation token."""
    from giftlab.objectives.gift import gift_mix_weight, gift_target
    from giftlab.training.reference import build_reference_cache, dense_logprobs, tail_mass

    full = build_reference_cache(model, tok, rows, solution_key=solution_key, max_length=max_length, top_k=10**9)
    exact = dense_logprobs(full.top_ids, full.top_logp, full.labels, full.label_logp, full.meta["vocab_size"])
    out = []
    for k in ks:
        ids, logp = full.top_ids[:, :k], full.top_logp[:, :k]
        cached = dense_logprobs(ids, logp, full.labels, full.label_logp, full.meta["vocab_size"])
        m = tail_mass(ids, logp, full.labels, full.label_logp)
        d_ref = kl(exact, cached)
        row = {"k": k, "tail_mean": m.mean().item(), "tail_max": m.max().item(),
               "kl_ref_mean": d_ref.mean().item(), "kl_ref_max": d_ref.max().item()}
        for beta in betas:
            b = gift_mix_weight(full.label_logp, beta)
            target, approx = gift_target(exact, full.labels, beta), gift_target(cached, full.labels, beta)
            d = kl(target.clamp_min(1e-45).log(), approx.clamp_min(1e-45).log())
            row[f"bound_b{beta:g}"] = ((1 - b) * m).mean().item()
            row[f"kl_b{beta:g}_mean"], row[f"kl_b{beta:g}_max"] = d.mean().item(), d.max().item()
        out.append(row)
    return out


def kl(logp, logq):
    """KL(p || q) per row from log-probs (0 log 0 = 0)."""
    import torch

    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1)


def epoch_seconds(base, tok, train_ds, collator, sft, method, work, ref_cache=None) -> float:
    """Seconds of one SFT epoch (trainer.train(), nothing saved) with ``method``'s objective."""
    from transformers.trainer_callback import PrinterCallback

    from giftlab.models import load_model
    from giftlab.objectives import get_objective
    from giftlab.training.sft import ObjectiveTrainer, training_arguments

    objective = get_objective(method, **({"beta": 3.0} if method == "gift" else {}))
    model = load_model(base)
    ref_model = load_model(base).eval().requires_grad_(False) if objective.needs_ref and ref_cache is None else None
    args = training_arguments(sft, work, steps_per_epoch=1)
    args.num_train_epochs, args.save_strategy, args.report_to, args.disable_tqdm = 1, "no", [], True
    args.logging_strategy = "no"
    trainer = ObjectiveTrainer(model=model, args=args, train_dataset=train_ds, data_collator=collator,
                               objective=objective, ref_model=ref_model, ref_cache=ref_cache, loss_head=sft.loss_head)
    trainer.remove_callback(PrinterCallback)  # no per-run metrics on stdout: the tables below are the output
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--config", default="params.yaml", help="the pipeline config whose sft settings are timed")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    p.add_argument("--top-k", type=int, default=64, help="the cache the timed GIFT run reads")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=int(os.environ.get("GIFTLAB_THREADS", 1)))
    args = p.parse_args(argv)

    import torch
    import transformers
    import yaml

    from giftlab.data import read_problems
    from giftlab.models import load_model, load_tokenizer
    from giftlab.training.reference import build_reference_cache
    from giftlab.training.sft import PadCollator, SFTDataset, SFTSettings

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    config = yaml.safe_load(Path(args.config).read_text())
    key = config["data"]["solution_key"]
    sft = SFTSettings.from_config({k: config["sft"][k] for k in ("epochs", "batch_size", "lr", "max_length")
                                   if k in config["sft"]} | {"report_to": []}, seed=config["seed"])
    tok, base = load_tokenizer(args.base), load_model(args.base)
    val = read_problems(args.val, ("question", key))
    train = read_problems(args.train, ("question", key))

    rows = approximation(base, tok, val, key, sft.max_length, args.ks, args.betas)
    print(f"\n## Approximation over the {len(val)} validation rows (vocab {base.config.vocab_size})\n")
    cols = ["k", "tail_mean", "tail_max", "kl_ref_mean", "kl_ref_max"]
    for beta in args.betas:
        cols += [f"bound_b{beta:g}", f"kl_b{beta:g}_mean", f"kl_b{beta:g}_max"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) if c == "k" else f"{row[c]:.2e}" for c in cols) + " |")

    t0 = time.perf_counter()
    cache = build_reference_cache(base, tok, train, solution_key=key, max_length=sft.max_length, top_k=args.top_k,
                                  batch_size=sft.batch_size)
    build = time.perf_counter() - t0
    train_ds, collator = SFTDataset(train, tok, key, sft.max_length), PadCollator(tok.pad_token_id)
    runs = {"sft": ("sft", None), "gift exact": ("gift", None), f"gift cached (k={args.top_k})": ("gift", cache)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for i, (name, (method, ref_cache)) in enumerate(runs.items()):
                times[name].append(epoch_seconds(args.base, tok, train_ds, collator, sft, method,
                                                 Path(tmp) / f"{r}-{i}", ref_cache))
    sft_s = statistics.median(times["sft"])
    print(f"\n## One SFT epoch: {len(train_ds)} examples, batch {sft.batch_size}, {args.threads} thread(s), "
          f"median of {args.repeats}\n")
    print("| run | seconds | × SFT |\n|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.2f} | {med / sft_s:.3f} |")
    print(f"| cache build (once per split) | {build:.2f} | {build / sft_s:.3f} |")


if __name__ == "__main__":
    main()
