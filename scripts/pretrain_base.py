"""Pretrain one tiny base model on the tiny world's corpus.

    python scripts/pretrain_base.py --config '{"seed": 1234, "arch": "qwen2", "hidden_size": 64, ...,
        "pretrain": {"max_steps": 700, "batch_size": 16, "block_size": 256, ...}}' \
        --corpus data/tiny/pretrain.jsonl --tokenizer data/tiny/tokenizer \
        --out models/base/qwen --work work/pretrain/qwen --metrics results/pretrain/qwen.json
"""

from __future__ import annotations


from giftlab import cli
from giftlab.data import read_jsonl
from giftlab.provenance import write_result

MODEL_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size", "max_position_embeddings", "tie_word_embeddings", "rope_theta",
              "rms_norm_eps", "initializer_range")
IGNORED_KEYS = ("seed", "arch", "pretrain", "source", "threads", "name", "backbone")
PRETRAIN_KEYS = ("max_steps", "batch_size", "block_size", "lr", "warmup_ratio", "min_lr_ratio",
                 "weight_decay", "log_every", "save_steps", "adam_betas", "max_grad_norm", "seed")


def read_corpus(path) -> list[str]:
    docs = []
    for i, row in enumerate(read_jsonl(path), 1):
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}: row {i}: expected a JSON object with a 'text' key")
        docs.append(row["text"])
    if not docs:
        raise ValueError(f"{path}: empty corpus")
    return docs


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--metrics", required=True)
    args = p.parse_args(argv)
    config = cli.setup(args)

    unknown = sorted(set(config) - set(MODEL_KEYS) - set(IGNORED_KEYS))
    if unknown:
        raise cli.ConfigError(f"{unknown[0]}: unknown backbone key (known: {', '.join(MODEL_KEYS)})")
    for key in ("arch", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size"):
        if key not in config:
            raise cli.ConfigError(f"{key}: missing backbone key")
    train = dict(config.get("pretrain") or {})
    unknown = sorted(set(train) - set(PRETRAIN_KEYS))
    if unknown:
        raise cli.ConfigError(f"pretrain.{unknown[0]}: unknown key (known: {', '.join(PRETRAIN_KEYS)})")
    if "max_steps" not in train:
        raise cli.ConfigError("pretrain.max_steps: missing")
    seed = int(train.pop("seed", config.get("seed", 0)))

    from giftlab.models import build_tiny_model, load_tokenizer
    from giftlab.training.pretrain import pretrain

    documents = read_corpus(args.corpus)
    tokenizer = load_tokenizer(args.tokenizer)
    model = build_tiny_model(config["arch"], len(tokenizer), tokenizer=tokenizer, seed=seed,
                             **{k: config[k] for k in MODEL_KEYS if k in config})
    metrics = pretrain(model, tokenizer, documents, out_dir=args.out, work_dir=args.work,
                       seed=seed, **train)
    metrics["arch"] = config["arch"]
    write_result(args.metrics, metrics, config, seed=seed)


if __name__ == "__main__":
    cli.run(main)
