"""Generate the tiny world: DeepMath-schema problems, pretraining corpus, tiny benchmarks, tokenizer.

    python scripts/make_world.py --config '{"seed": 1234}' --problems data/tiny/problems.jsonl \
        --pretrain-corpus data/tiny/pretrain.jsonl --benchmarks-dir data/tiny/benchmarks \
        --tokenizer data/tiny/tokenizer [--summary data/tiny/world.json]

The corpus is JSON lines ``{"text": document}``; benchmarks are ``<dir>/<name>.jsonl`` records
``{id, prompt, gold, kind, difficulty}``. Every output is written atomically.
"""

from __future__ import annotations

import json

from giftlab import cli
from giftlab.io import atomic_dir, write_text_atomic
from giftlab.provenance import write_result


def _jsonl(rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


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
    write_text_atomic(args.problems, _jsonl(world.problems))
    write_text_atomic(args.pretrain_corpus, _jsonl({"text": d} for d in world.corpus))
    with atomic_dir(args.benchmarks_dir) as tmp:
        for name, records in world.benchmarks.items():
            (tmp / f"{name}.jsonl").write_text(_jsonl(records))
    with atomic_dir(args.tokenizer) as tmp:
        build_tokenizer(tmp)
    if args.summary:
        summary = world.summary()
        summary["world_config"] = world.config.to_dict()
        write_result(args.summary, summary, config, seed=world.config.seed)


if __name__ == "__main__":
    cli.run(main)
