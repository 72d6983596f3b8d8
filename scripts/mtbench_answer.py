"""Rule `mtbench_answer`: one final policy's answers to both turns of every MT-Bench dialogue (Table 5).

    python scripts/mtbench_answer.py --config '{"seed": 0, "backbone": "qwen", "run": "gift-b3", "stage": "rl",
        "max_new_tokens": 1024, "temperatures": {"writing": 0.7, "math": 0.0}}' --model models/rl/qwen/gift-b3 \
        --questions data/mt_bench/question.jsonl [data/mt_bench/reference_answer/gpt-4.jsonl] \
        --answers results/mtbench/answers/qwen/gift-b3.jsonl --summary results/mtbench/answers/qwen/gift-b3.json

Turn 2 is generated after the model's own turn-1 answer, one sample per turn at the category's temperature
(giftlab.evaluation.mtbench), with the evaluation's backend (HF or vLLM). The answers file holds one line per
dialogue: the question record plus ``answers``, ``num_tokens``, ``finish_reasons``, ``temperature``.
"""

import json
import time
from collections import Counter

from giftlab import cli
from giftlab.io import write_text_atomic
from giftlab.jobs import MTBenchAnswerJob
from giftlab.profiling import emit, phase
from giftlab.provenance import file_sha256, path_sha256, write_result


def main(argv=None):
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model directory (weights + tokenizer) or a hub id")
    p.add_argument("--questions", nargs="+", required=True,
                   help="the questions file, then optionally FastChat's reference answers")
    p.add_argument("--answers", required=True)
    p.add_argument("--summary", required=True)
    args = p.parse_args(argv)
    config = cli.setup(args)
    job = MTBenchAnswerJob.from_config(config)
    if len(args.questions) > 2:
        raise cli.ConfigError(f"--questions: a questions file and at most one reference answers file, "
                              f"got {args.questions}")

    from giftlab.evaluation.generation import make_generator
    from giftlab.evaluation.mtbench import answer_dialogues, load_questions
    from giftlab.models import local_checkpoint

    questions = load_questions(*args.questions)
    with phase("mtbench_answer/load"):
        generator = make_generator(local_checkpoint(args.model), **job.generator_kwargs())
    start = time.perf_counter()
    answered = answer_dialogues(generator, generator.tokenizer, questions, temperature=job.temperature,
                                temperatures=job.temperatures, max_new_tokens=job.max_new_tokens, seed=job.seed,
                                top_p=job.top_p, chat_template=job.chat_template)
    seconds = time.perf_counter() - start
    emit("mtbench_answer/generate", seconds)
    write_text_atomic(args.answers, "".join(json.dumps(d) + "\n" for d in answered))
    tokens = [d["num_tokens"] for d in answered]
    summary = {"model": args.model, "backend": generator.backend, "n_dialogues": len(answered),
               "categories": dict(Counter(d["category"] for d in answered)),
               "mean_tokens": [sum(t[i] for t in tokens) / len(tokens) for i in (0, 1)],
               "finish_reasons": dict(Counter(r for d in answered for r in d["finish_reasons"])),
               "questions": {path: path_sha256(path) for path in args.questions},  # a file or a folder
               "answers_sha256": file_sha256(args.answers), "generation_seconds": seconds}
    write_result(args.summary, summary, config, seed=job.seed)


if __name__ == "__main__":
    cli.run(main)
