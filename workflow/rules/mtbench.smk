# Table 5 (MT-Bench): each SFT-then-RL final policy answers two-turn dialogues (turn 2 sees its own turn-1 answer),
# then a judge rates every turn 1-10 (giftlab.evaluation.mtbench). Only where the config plans it (`mtbench`).
# The judge runs on the host Snakemake runs on (localrules): on a cluster that is where the network is, and a
# judge job needs no GPU. Its replies are cached outside the outputs (mtbench.judge.cache), so a rerun pays nothing.


localrules:
    mtbench_judge,


rule mtbench_questions:
    # the tiny world's two-turn analogue (tiny profiles; the paper reads a local copy of MT-Bench's questions)
    input:
        problems="data/tiny/problems.jsonl",
        corpus="data/tiny/pretrain.jsonl",
        benchmarks=PLAN.world_benchmark_files(),
    output:
        questions=MTBENCH_TINY_QUESTIONS,
        provenance=MTBENCH_TINY_QUESTIONS.replace(".jsonl", ".provenance.json"),
    params:
        job=job("mtbench_questions"),
        script=script("mtbench_questions"),
    threads: job_threads("mtbench_questions", 1)
    resources:
        **job_resources("mtbench_questions"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/mtbench/questions.log",
    benchmark:
        "logs/benchmark/mtbench/questions.tsv",
    shell:
        "python {params.script} --config {params.job} --problems {input.problems} --corpus {input.corpus}"
        " --benchmarks {input.benchmarks} --out {output.questions} --provenance {output.provenance} > {log} 2>&1"


rule mtbench_answer:
    input:
        model=lambda wildcards: PLAN.model("rl", wildcards.backbone, wildcards.run)[0],
        questions=PLAN.mtbench_questions() if PLAN.mtbench else [],
    output:
        answers="results/mtbench/answers/{backbone}/{run}.jsonl",
        summary="results/mtbench/answers/{backbone}/{run}.json",
    params:
        job=job("mtbench_answer"),
        script=script("mtbench_answer"),
        model=lambda wildcards: PLAN.model("rl", wildcards.backbone, wildcards.run)[1],
        questions=lambda wildcards, input: " ".join(input.questions),
    threads: job_threads("mtbench_answer")
    resources:
        **job_resources("mtbench_answer"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/mtbench/answer/{backbone}/{run}.log",
    benchmark:
        "logs/benchmark/mtbench/answer/{backbone}/{run}.tsv",
    shell:
        "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --model {params.model}"
        " --questions {params.questions} --answers {output.answers} --summary {output.summary} > {log} 2>&1"


rule mtbench_judge:
    input:
        answers="results/mtbench/answers/{backbone}/{run}.jsonl",
    output:
        judgements="results/mtbench/judgements/{backbone}/{run}.jsonl",
        scores="results/mtbench/scores/{backbone}/{run}.json",
    params:
        job=job("mtbench_judge"),
        runtime=runtime("mtbench_judge"),
        script=script("mtbench_judge"),
    threads: 1
    resources:
        judge_jobs=1,  # judge jobs at once: the SLURM profile caps them (each holds mtbench.judge.max_in_flight calls)
        **job_resources("mtbench_judge"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/mtbench/judge/{backbone}/{run}.log",
    benchmark:
        "logs/benchmark/mtbench/judge/{backbone}/{run}.tsv",
    shell:
        "python {params.script} --config {params.job} --runtime {params.runtime} --answers {input.answers}"
        " --judgements {output.judgements} --scores {output.scores} > {log} 2>&1"
