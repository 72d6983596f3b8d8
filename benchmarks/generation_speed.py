"""Generated tokens/s of the HF backend on a tiny random Qwen2 model, for several batch sizes.

    .venv/bin/python benchmarks/generation_speed.py [--batch-sizes 1 8 32 64] [--rows 64]

Builds a random Qwen2 (hidden 64, 4 layers, char vocab ~85, the tiny-world S size) in a temp
dir. Every row runs to ``--max-new-tokens`` (eos ignored) so all columns count the same work;
the best of ``--repeats`` timings is shown (the CPUs are shared).
Columns: ``HFGenerator`` (per-row seeded Gumbel sampler), plain ``model.generate(do_sample=True)``
with the global RNG (what the per-row seeding costs), and the share of samples whose text equals
the first batch size's (batch invariance: 100% expected in fp32 on CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

PROMPT = "Start with {a}. Add 5. Multiply by 2. Subtract 3. What is the result?\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    p.add_argument("--rows", type=int, default=64, help="samples generated per measurement")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    p.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on CUDA) or a torch dtype")
    p.add_argument("--no-native", action="store_true", help="skip the plain-generate column")
    p.add_argument("--threads", type=int, default=int(os.environ.get("GIFTLAB_THREADS", 1)))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from transformers import GenerationConfig

    from giftlab.evaluation.generation import HFGenerator
    from giftlab.evaluation.toy import build_toy_model_dir

    n = 8
    prompts = [PROMPT.format(a=i % 20 + 1) for i in range(max(1, args.rows // n))]
    rows = len(prompts) * n
    print(f"model hidden={args.hidden} layers={args.layers}, {rows} rows x "
          f"{args.max_new_tokens} new tokens, T=1.0, threads={args.threads}, "
          f"torch {torch.__version__}, device={args.device or 'auto'}, dtype={args.dtype}")
    print(f"{'batch':>6} {'HFGenerator tok/s':>18} {'native sample tok/s':>20} {'HFGen s':>8} "
          f"{'same text':>9}")
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        path = build_toy_model_dir(Path(tmp) / "m", hidden=args.hidden, layers=args.layers,
                                   heads=4, ffn=4 * args.hidden)
        for bs in args.batch_sizes:
            gen = HFGenerator(path, batch_size=bs, ignore_eos=True, device=args.device,
                              dtype=args.dtype)
            gen.generate(prompts[:1], n=1, temperature=1.0, top_p=1.0, max_new_tokens=4, seed=0)
            ours = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = gen.generate(prompts, n=n, temperature=1.0, top_p=1.0,
                                   max_new_tokens=args.max_new_tokens, seed=0)
                ours = min(ours, time.perf_counter() - t0)
            tokens = sum(s.num_tokens for per in out for s in per)
            texts = [s.text for per in out for s in per]
            reference = reference or texts
            same = sum(a == b for a, b in zip(texts, reference)) / len(texts)

            tok, model = gen.tokenizer, gen.model
            flat = [q for q in prompts for _ in range(n)]
            cfg = GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                   max_new_tokens=args.max_new_tokens,
                                   min_new_tokens=args.max_new_tokens, eos_token_id=None,
                                   pad_token_id=tok.pad_token_id)
            native, native_tokens = float("nan"), 0
            for _ in range(0 if args.no_native else args.repeats):
                t0 = time.perf_counter()
                native_tokens = 0
                with torch.inference_mode():
                    for s in range(0, len(flat), bs):
                        enc = tok(flat[s:s + bs], return_tensors="pt",
                                  padding=True).to(gen.device)
                        o = model.generate(**enc, generation_config=cfg)
                        native_tokens += (o.shape[1] - enc["input_ids"].shape[1]) * o.shape[0]
                if gen.device.startswith("cuda"):
                    torch.cuda.synchronize()
                elapsed = time.perf_counter() - t0
                native = elapsed if native != native else min(native, elapsed)
            print(f"{bs:>6} {tokens / ours:>18.0f} {native_tokens / native:>20.0f} {ours:>8.2f} "
                  f"{same:>9.1%}", flush=True)


if __name__ == "__main__":
    main()
