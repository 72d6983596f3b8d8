"""HFGenerator's decoding (shared prompt cache, stopped rows dropped) vs transformers' generate, side by side.

    .venv/bin/python benchmarks/generation_paths.py --model models/rl/qwen/sft \
        --benchmark data/tiny/benchmarks/tiny_id.jsonl [--n 16] [--temperature 0.6] [--repeats 2]

Run in a workspace the tiny default built. Both columns sample every problem of ``--benchmark`` ``--n`` times in
the same batches of ``--batch-size`` rows with the same per-row seeded sampler: ``generate`` is transformers'
``model.generate`` over each padded batch (every row prefilled, every row computed until the batch's longest answer
ends: the code before 2026-12-05), ``HFGenerator`` the pipeline's. Prints each one's best-of-``--repeats`` time,
the ratio, and the share of samples that are identical (100% expected).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def reference_generate(gen, prompts: list[str], n: int, seed: int, temperature: float, top_p: float,
                       max_new_tokens: int) -> list[list[str]]:
    """Texts from transformers' generate over the rows HFGenerator would batch, with its sampler and stop rule."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    from giftlab.evaluation.generation import _PerRowSampler, sample_seed

    copies = 1 if temperature == 0 else n
    lengths = [len(gen.tokenizer(p).input_ids) for p in prompts]
    rows = sorted(((p, i) for p in range(len(prompts)) for i in range(copies)),
                  key=lambda r: (lengths[r[0]], r[0], r[1]))
    texts: dict[tuple[int, int], str] = {}
    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=gen.stop_ids,
                              pad_token_id=gen.tokenizer.pad_token_id, use_cache=True, num_beams=1)
    for start in range(0, len(rows), gen.batch_size):
        batch = rows[start:start + gen.batch_size]
        enc = gen.tokenizer([prompts[p] for p, _ in batch], return_tensors="pt", padding=True)
        seeds = [sample_seed(seed, prompts[p], i) for p, i in batch]
        processors = LogitsProcessorList([] if temperature == 0 else [_PerRowSampler(seeds, temperature, top_p)])
        with torch.inference_mode():
            out = gen.model.generate(**enc, generation_config=config, logits_processor=processors)
        for row, ids in zip(batch, out[:, enc["input_ids"].shape[1]:].tolist()):
            end = next((j for j, t in enumerate(ids) if t in gen.stop_ids), None)
            texts[row] = gen.tokenizer.decode(ids if end is None else ids[:end + 1], skip_special_tokens=True)
    return [[texts[(p, 0 if temperature == 0 else i)] for i in range(n)] for p in range(len(prompts))]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--benchmark", required=True, type=Path)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from giftlab.evaluation.generation import HFGenerator, render_prompt

    torch.set_num_threads(1)
    gen = HFGenerator(args.model, batch_size=args.batch_size)
    records = [json.loads(line) for line in args.benchmark.read_text().splitlines() if line.strip()]
    prompts = [render_prompt(gen.tokenizer, r["prompt"], None) for r in records]
    kw = dict(n=args.n, seed=1234, temperature=args.temperature, top_p=1.0, max_new_tokens=args.max_new_tokens)
    ours = lambda: [[s.text for s in per] for per in gen.generate(prompts, **kw)]
    theirs = lambda: reference_generate(gen, prompts, **kw)
    best, out = {}, {}
    for _ in range(args.repeats):  # in rotation: a busy machine slows both alike
        for name, fn in (("generate", theirs), ("HFGenerator", ours)):
            start = time.perf_counter()
            out[name] = fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    flat = lambda texts: [t for per in texts for t in per]
    same = sum(a == b for a, b in zip(flat(out["generate"]), flat(out["HFGenerator"])))
    total = len(flat(out["generate"]))
    print(f"{args.model} on {args.benchmark.name}: {len(prompts)} prompts x {args.n} samples, T = {args.temperature}")
    print(f"| transformers generate s | HFGenerator s | speed-up | identical samples |")
    print(f"|---|---|---|---|")
    print(f"| {best['generate']:.2f} | {best['HFGenerator']:.2f} | {best['generate'] / best['HFGenerator']:.2f}x |"
          f" {same}/{total} |")


if __name__ == "__main__":
    main()
