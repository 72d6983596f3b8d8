# The tiny world (tiny/smoke/mini profiles only): synthetic DeepMath-schema problems, a noisier
# pretraining corpus, tiny benchmark analogues, a char-level tokenizer, and pretrained tiny bases.


rule world:
    output:
        problems="data/tiny/problems.jsonl",
        corpus="data/tiny/pretrain.jsonl",
        tokenizer=directory("data/tiny/tokenizer"),
        benchmarks=PLAN.world_benchmark_files(),
        summary="results/world.json",
    params:
        job=job("world"),
        script=script("make_world"),
        bench_dir=lambda wildcards, output: os.path.dirname(output.benchmarks[0]),
    threads: job_threads("world", 1)
    resources:
        **job_resources("world"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/world.log",
    benchmark:
        "logs/benchmark/world.tsv",
    shell:
        "python {params.script} --config {params.job} --problems {output.problems}"
        " --pretrain-corpus {output.corpus} --benchmarks-dir {params.bench_dir}"
        " --tokenizer {output.tokenizer} --summary {output.summary} > {log} 2>&1"


rule pretrain_base:
    input:
        corpus="data/tiny/pretrain.jsonl",
        tokenizer="data/tiny/tokenizer",
    output:
        model=directory("models/base/{backbone}"),
        metrics="results/pretrain/{backbone}.json",
    params:
        job=job("pretrain_base"),
        script=script("pretrain_base"),
        work="work/pretrain/{backbone}",
    threads: job_threads("pretrain_base")
    resources:
        **job_resources("pretrain_base"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/pretrain/{backbone}.log",
    benchmark:
        "logs/benchmark/pretrain/{backbone}.tsv",
    shell:
        "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --corpus {input.corpus}"
        " --tokenizer {input.tokenizer} --out {output.model} --work {params.work}"
        " --metrics {output.metrics} > {log} 2>&1"
