"""GRPO's rollouts: transformers' generate (what TRL calls) vs giftlab.training.rollouts, side by side.

    .venv/bin/python benchmarks/rollout_paths.py --model models/sft/qwen/sft/epoch_3 \
        --rl data/splits/rl.jsonl [--steps 10] [--prompts 8] [--generations 8] [--max-new-tokens 64] [--repeats 2]

Run in a workspace the tiny default built. Each of ``--steps`` batches holds ``--prompts`` RL prompts, each repeated
``--generations`` times in a row and left-padded, as TRL's GRPOTrainer batches them, sampled at ``--temperature``
with the settings TRL gives plain GRPO (no top-k / top-p). Both paths start every batch from the same random
state. Prints each one's best-of-``--repeats`` time over all batches, the ratio, and the number of batches whose
returned tensors and random state afterwards are identical (all expected).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--rl", required=True, type=Path, help="the RL split (data/splits/rl.jsonl)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)

    import torch
    from transformers import GenerationConfig

    from giftlab.models import load_model, load_tokenizer
    from giftlab.training.grpo import rl_dataset_rows
    from giftlab.training.rollouts import effective_config, fast_path_refusal, sample_like_generate

    torch.set_num_threads(1)
    tokenizer = load_tokenizer(args.model)
    tokenizer.padding_side = "left"
    model = load_model(args.model)
    model.train()  # TRL samples with the policy in train mode
    rows = [json.loads(line) for line in args.rl.read_text().splitlines() if line.strip()]
    prompts = [r["prompt"] for r in rl_dataset_rows(tokenizer, rows)]
    if args.steps * args.prompts > len(prompts):
        raise SystemExit(f"rollout_paths: --steps {args.steps} x --prompts {args.prompts} needs "
                         f"{args.steps * args.prompts} prompts; {args.rl} has {len(prompts)}")
    batches = []
    for step in range(args.steps):
        chosen = prompts[step * args.prompts:(step + 1) * args.prompts]
        enc = tokenizer([q for q in chosen for _ in range(args.generations)], return_tensors="pt", padding=True)
        batches.append((enc["input_ids"], enc["attention_mask"]))
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=True, pad_token_id=tokenizer.pad_token_id,
                              bos_token_id=tokenizer.bos_token_id, eos_token_id=[tokenizer.eos_token_id],
                              temperature=args.temperature, top_p=1.0, top_k=0, repetition_penalty=1.0,
                              disable_compile=True)
    effective = effective_config(model, config)
    refusal = fast_path_refusal(model, effective, {"input_ids": None, "attention_mask": None})
    if refusal:
        raise SystemExit(f"error: the fast path refuses these settings ({refusal})")

    def run(generate):
        outs = []
        for step, (ids, mask) in enumerate(batches):
            torch.manual_seed(step)
            with torch.no_grad():
                outs.append((generate(ids, mask), torch.get_rng_state()))
        return outs

    paths = {"generate": lambda ids, mask: model.generate(input_ids=ids, attention_mask=mask, generation_config=config),
             "fast": lambda ids, mask: sample_like_generate(model, ids, mask, effective)}
    best, out = {}, {}
    for _ in range(args.repeats):  # in rotation: a busy machine slows both alike
        for name, fn in paths.items():
            start = time.perf_counter()
            out[name] = run(fn)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    same = sum(torch.equal(a, b) and torch.equal(sa, sb) for (a, sa), (b, sb) in zip(out["generate"], out["fast"]))
    tokens = sum(int((o[:, ids.shape[1]:] != tokenizer.pad_token_id).sum()) for (o, _), (ids, _) in
                 zip(out["generate"], batches))
    print(f"{args.model}: {args.steps} batches of {args.prompts} prompts x {args.generations} completions, "
          f"T = {args.temperature}, up to {args.max_new_tokens} tokens ({tokens} generated)")
    print("| transformers generate s | fast rollouts s | speed-up | identical batches |")
    print("|---|---|---|---|")
    print(f"| {best['generate']:.2f} | {best['fast']:.2f} | {best['generate'] / best['fast']:.2f}x |"
          f" {same}/{len(batches)} |")


if __name__ == "__main__":
    main()
