"""Set-up of the CPU rehearsal of the paper run (config/rehearsal.yaml): what a cluster user downloads, at CPU size.

    python scripts/make_rehearsal.py --out rehearsal

writes, in the layouts of the real downloads (docs/scale.md, step 2):

* ``models/Qwen2.5-rehearsal`` and ``models/Llama-3.1-rehearsal``: HF checkpoint folders of a
  ``Qwen2ForCausalLM`` (untied head, ChatML chat template, ``<|endoftext|>``) and a ``LlamaForCausalLM``
  (llama3 RoPE scaling, Llama 3 header chat template, ``<|begin_of_text|>``), each with a byte-level BPE tokenizer
  trained here; bf16 safetensors with random weights. The pipeline loads them exactly as it loads
  Qwen/Qwen2.5-7B from a local directory: AutoConfig, AutoModelForCausalLM, AutoTokenizer.
* ``data/DeepMath-103K``: ``README.md`` and ``data/train-0000{0,1}-of-00002.parquet`` with DeepMath-103K's columns
  (question, final_answer, difficulty, topic, r1_solution_1..3), arithmetic-chain problems of the tiny world.
* ``benchmarks/<name>.jsonl``: the ten benchmarks in their upstream field names (tests/fixtures/benchmarks).

Nothing here is read by the tiny default; the output folder is git-ignored.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE_BENCHMARKS = REPO / "tests" / "fixtures" / "benchmarks"

QWEN_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
BACKBONES = {
    "Qwen2.5-rehearsal": {"arch": "qwen2", "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                          "bos": None, "eos": "<|endoftext|>", "pad": "<|endoftext|>", "template": QWEN_TEMPLATE,
                          "tokenizer_class": "Qwen2Tokenizer"},
    "Llama-3.1-rehearsal": {"arch": "llama", "special": ["<|begin_of_text|>", "<|end_of_text|>",
                                                         "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                            "bos": "<|begin_of_text|>", "eos": "<|end_of_text|>", "pad": None,
                            "template": LLAMA_TEMPLATE, "tokenizer_class": "PreTrainedTokenizerFast"},
}


def deepmath_rows(n: int, seed: int) -> list[dict]:
    from giftlab.tinyworld.problems import TOPIC, render, sample_problems

    rng = random.Random(seed)
    problems = sample_problems(rng, n, (1, 4))
    return [{"question": p.question, "final_answer": str(p.answer), "difficulty": float(1 + len(p.steps)),
             "topic": TOPIC, "r1_solution_1": render(p, "steps"), "r1_solution_2": render(p, "verbose"),
             "r1_solution_3": render(p, "chain")} for p in problems]


def corpus(rows: list[dict]) -> list[str]:
    texts = [r[k] for r in rows for k in ("question", "r1_solution_1", "r1_solution_2")]
    for path in sorted(FIXTURE_BENCHMARKS.glob("*.jsonl")):
        texts += [line for line in path.read_text().splitlines() if line.strip()]
    return texts


def make_tokenizer(spec: dict, texts: list[str], out: Path):
    """A byte-level BPE tokenizer (GPT-2 style, as Qwen2 and Llama 3 use), trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=spec["special"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    if spec["bos"]:  # Llama 3 prepends <|begin_of_text|> to every encoding
        bos_id = tok.token_to_id(spec["bos"])
        tok.post_processor = processors.TemplateProcessing(single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A $B",
                                                           special_tokens=[(spec["bos"], bos_id)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=spec["bos"], eos_token=spec["eos"],
                                   pad_token=spec["pad"], chat_template=spec["template"], clean_up_tokenization_spaces=False)
    fast.save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = spec["tokenizer_class"]
    config_path.write_text(json.dumps(config, indent=2))
    return fast


def make_model(spec: dict, tokenizer, out: Path, seed: int, heads: int = 4) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    shape = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=heads, num_key_value_heads=min(2, heads), max_position_embeddings=2048,
                 tie_word_embeddings=False, **special)
    if spec["arch"] == "qwen2":
        config, cls = Qwen2Config(rope_theta=1000000.0, **shape), Qwen2ForCausalLM
    else:
        config = LlamaConfig(rope_theta=500000.0, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 1024}, **shape)
        cls = LlamaForCausalLM
    torch.manual_seed(seed)
    model = cls(config).to(torch.bfloat16)  # released checkpoints are bf16
    model.generation_config = GenerationConfig(**{k: v for k, v in special.items() if v is not None})
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="rehearsal", help="output folder (default: rehearsal/)")
    p.add_argument("--problems", type=int, default=240, help="DeepMath-schema rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heads", type=int, choices=(1, 2, 4), default=4,
                   help="attention heads of the 64-wide models (default 4: head size 16; benchmarks/"
                        "device_cluster_check.sh asks for 1, a head size vLLM's GPU attention kernels support)")
    args = p.parse_args(argv)
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)

    rows = deepmath_rows(args.problems, args.seed)
    data = tmp / "data" / "DeepMath-103K"
    (data / "data").mkdir(parents=True)
    (data / "README.md").write_text("# DeepMath-103K (rehearsal stand-in: arithmetic chains, same columns)\n")
    import pandas as pd

    half = len(rows) // 2
    for i, part in enumerate((rows[:half], rows[half:])):
        pd.DataFrame(part).to_parquet(data / "data" / f"train-0000{i}-of-00002.parquet", index=False)

    texts = corpus(rows)
    for name, spec in BACKBONES.items():
        folder = tmp / "models" / name
        make_model(spec, make_tokenizer(spec, texts, folder), folder, args.seed, args.heads)

    (tmp / "benchmarks").mkdir()
    for path in sorted(FIXTURE_BENCHMARKS.glob("*.jsonl")):
        shutil.copy(path, tmp / "benchmarks" / path.name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"rehearsal inputs in {out}/: models/{', models/'.join(BACKBONES)}, data/DeepMath-103K, benchmarks/")


if __name__ == "__main__":
    main()
