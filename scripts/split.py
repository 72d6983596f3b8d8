"""Rule `split`: disjoint, deterministic SFT / RL / validation subsets of the DeepMath-schema problems."""

from giftlab import cli
from giftlab.data import load_problems, split_problems, with_instruction, write_jsonl
from giftlab.jobs import SplitJob
from giftlab.provenance import data_sha256, write_result


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--problems", required=True,
                   help="a local file or downloaded dataset folder (parquet, jsonl, json, csv) or a hub dataset id")
    p.add_argument("--sft", required=True)
    p.add_argument("--rl", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--summary", required=True)
    args = p.parse_args(argv)
    config = cli.setup(args)
    job = SplitJob.from_config(config)
    rows = load_problems(args.problems, job.solution_key)
    distinct = len({row["question"].strip() for row in rows})
    if distinct < len(rows):  # the same question twice would otherwise land in two subsets
        print(f"split: {args.problems}: {len(rows) - distinct} repeated questions dropped "
              f"({distinct} distinct of {len(rows)} rows)")
    parts = split_problems(rows, job.split, seed=job.seed)
    if job.instruction:  # train on the prompts the math benchmarks are evaluated with
        parts = {name: [{**row, "question": with_instruction(row["question"])} for row in part]
                 for name, part in parts.items()}
    for name in ("sft", "rl", "val"):
        write_jsonl(getattr(args, name), parts[name])
    write_result(args.summary, {"source": args.problems, "rows_in_source": len(rows),
                                "distinct_questions": distinct, "repeated_questions_dropped": len(rows) - distinct,
                                "sizes": {k: len(v) for k, v in parts.items()},
                                "data_sha256": data_sha256(getattr(args, name) for name in ("sft", "rl", "val"))},
                 config)


if __name__ == "__main__":
    cli.run(main)
