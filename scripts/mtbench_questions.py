"""Rule `mtbench_questions`: the tiny world's two-turn dialogues (Table 5's tiny analogue of MT-Bench's questions),
as FastChat's question.jsonl.

    python scripts/mtbench_questions.py --config '{"seed": 1234, "n_dialogues": 24, "world": {}}' \
        --problems data/tiny/problems.jsonl --corpus data/tiny/pretrain.jsonl --benchmarks data/tiny/benchmarks/*.jsonl \
        --out data/mtbench/tiny_questions.jsonl --provenance data/mtbench/tiny_questions.provenance.json

Turn 1 is a problem of the world's own distribution that is neither in the SFT/RL pool (--problems), nor the
question of a pretraining document (--corpus: the bases would have seen it worked), nor a benchmark question
(--benchmarks); turn 2 depends on it (giftlab.tinyworld.dialogue).
"""

from giftlab import cli
from giftlab.jobs import MTBenchQuestionsJob
from giftlab.provenance import write_sidecar
from giftlab.rowfiles import read_jsonl


def main(argv=None):
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--problems", required=True, help="the tiny world's problem pool (held out of the dialogues)")
    p.add_argument("--corpus", required=True, help="the pretraining corpus (its documents' questions held out)")
    p.add_argument("--benchmarks", nargs="*", default=[], help="the tiny benchmarks (held out too)")
    p.add_argument("--out", required=True)
    p.add_argument("--provenance", required=True)
    args = p.parse_args(argv)
    config = cli.setup(args, torch_threads=False)
    job = MTBenchQuestionsJob.from_config(config)

    from giftlab.tinyworld import WorldConfig
    from giftlab.tinyworld.dialogue import make_dialogues, write_dialogues

    world = WorldConfig.from_dict({**job.world, "seed": job.seed})
    held_out = {row["question"] for row in read_jsonl(args.problems)}
    held_out |= {row["text"].split("\n", 1)[0] for row in read_jsonl(args.corpus)}  # "question\nsolution" documents
    for path in args.benchmarks:
        held_out |= {row.get("question", row["prompt"]) for row in read_jsonl(path)}
    dialogues = make_dialogues(job.n_dialogues, job.seed, steps_range=world.train_steps,
                               categories=job.categories, exclude=held_out, **world.problem_kwargs())
    write_dialogues(args.out, dialogues)
    write_sidecar(args.provenance, config, [args.problems, args.corpus, *args.benchmarks], [args.out], seed=job.seed)


if __name__ == "__main__":
    cli.run(main)
