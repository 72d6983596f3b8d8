"""Rule `mtbench_judge`: a judge rates each turn of one model's MT-Bench answers 1-10; its scores by category.

    python scripts/mtbench_judge.py --config '{"seed": 0, "backbone": "qwen", "run": "gift-b3",
        "judge": {"kind": "openai", "model": "gpt-4", "base_url": "http://judge:8000/v1"}}' \
        --answers results/mtbench/answers/qwen/gift-b3.jsonl \
        --judgements results/mtbench/judgements/qwen/gift-b3.jsonl --scores results/mtbench/scores/qwen/gift-b3.json

The judge is giftlab.evaluation.mtbench.make_judge's (a model behind an OpenAI-compatible API, or the tiny world's
rubric judge). A call that still fails after its retries is never scored: with more failed calls than
judge.max_failed_calls (default 0) the job stops in one line and writes nothing (the judge sends no call after
the failure that decides it), and a rerun sends only those calls again (every reply received is in the cache,
judge.cache). A reply without a rating is counted as
``unrated`` in the scores, never a 0.
"""

import json

from giftlab import cli
from giftlab.io import write_text_atomic
from giftlab.jobs import MTBenchJudgeJob
from giftlab.provenance import file_sha256, write_result
from giftlab.rowfiles import read_jsonl

DEFAULT_CACHE = "work/mtbench/judge_cache.jsonl"


def main(argv=None):
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--answers", required=True)
    p.add_argument("--judgements", required=True)
    p.add_argument("--scores", required=True)
    args = p.parse_args(argv)
    config = cli.setup(args, torch_threads=False)
    job = MTBenchJudgeJob.from_config(config)

    from giftlab.evaluation.mtbench import judge_requests, make_judge, score_table

    answered = read_jsonl(args.answers)
    requests = judge_requests(answered)
    spec = job.judge
    judge = make_judge(spec, cache_path=spec.get("cache", DEFAULT_CACHE) if spec["kind"] == "openai" else None)
    try:
        judgements = judge.judge(requests)
    finally:
        getattr(judge, "close", lambda: None)()
    stats = judge.stats.as_dict()
    failed = [j for j in judgements if j.error is not None]
    if len(failed) > int(spec.get("max_failed_calls", 0)):
        raise cli.JobFailed(f"judge {judge.name}: {len(failed)} of {len(judgements)} calls failed after their "
                              f"retries (first: {failed[0].error}); nothing written: rerun to send only those again "
                              f"({len(judgements) - len(failed)} replies are cached)")
    rows = [{"question_id": d["question_id"], "category": d["category"], "turn": r.turn, "rating": j.rating,
             "judgement": j.text, "error": j.error, "cached": j.cached}
            for r, j, d in zip(requests, judgements, (d for d in answered for _ in (1, 2)))]
    write_text_atomic(args.judgements, "".join(json.dumps(row) + "\n" for row in rows))
    scores = score_table(answered, judgements, ci_resamples=job.ci_resamples, seed=job.seed)
    write_result(args.scores, {"judge": judge.name, "judge_stats": stats, **scores,
                               "answers_sha256": file_sha256(args.answers)}, config, seed=job.seed)
    print(f"judge {judge.name}: total {scores['total']['score']}, {scores['total']['unrated']} unrated; {stats}")


if __name__ == "__main__":
    cli.run(main)
