"""Generate the tiny world: DeepMath-schema problems, pretraining corpus, tiny benchmarks, tokenizer.

    python scripts/make_world.py --config '{"seed": 1234}' --problems data/tiny/problems.jsonl \
        --pretrain-corpus data/tiny/pretrain.jsonl --benchmarks-dir data/tiny/benchmarks \
        --tokenizer data/tiny/tokenizer [--summary results/world.json]

The corpus is JSON lines ``{"text": document}``; benchmarks are ``<dir>/<name>.jsonl`` records
``{id, prompt, gold, kind, difficulty}``. Every output is written atomically.
"""

from __future__ import annotations

from pathlib import Path

from giftlab import cli
from giftlab.data import write_jsonl
from giftlab.io import atomic_dir
from giftlab.provenance import file_sha256, write_result


def main(argv=None) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--problems", required=True)
    p.add_argument("--pretrain-corpus", required=True)
    p.add_argument("--benchmarks-dir", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--summary", default=None, help="optional JSON summary with provenance")
    args = p.parse_args(argv)
    config = cli.setup(args)

    from giftlab.tinyworld import build_tokenizer, build_world

    world = build_world(config)
    write_jsonl(args.problems, world.problems)
    write_jsonl(args.pretrain_corpus, ({"text": d} for d in world.corpus))
    with atomic_dir(args.benchmarks_dir) as tmp:
        for name, records in world.benchmarks.items():
            write_jsonl(tmp / f"{name}.jsonl", records)
    with atomic_dir(args.tokenizer) as tmp:
        build_tokenizer(tmp)
    if args.summary:
        summary = world.summary()
        summary["world_config"] = world.config.to_dict()
        written = [args.problems, args.pretrain_corpus,
                   *sorted(str(p) for p in Path(args.benchmarks_dir).glob("*.jsonl"))]
        summary["sha256"] = {str(p): file_sha256(p) for p in written}
        write_result(args.summary, summary, config, seed=world.config.seed)


if __name__ == "__main__":
    cli.run(main)
