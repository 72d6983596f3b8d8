# Split the DeepMath-schema problems into disjoint SFT / RL / validation subsets.


rule split:
    input:
        problems=lambda wildcards: PLAN.problems()[0],
    output:
        sft="data/splits/sft.jsonl",
        rl="data/splits/rl.jsonl",
        val="data/splits/val.jsonl",
        summary="results/split.json",
    params:
        job=job("split"),
        script=script("split"),
        problems=PLAN.problems()[1],
    threads: job_threads("split", 1)
    resources:
        **job_resources("split"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/split.log",
    benchmark:
        "logs/benchmark/split.tsv",
    shell:
        "python {params.script} --config {params.job} --problems {params.problems}"
        " --sft {output.sft} --rl {output.rl} --val {output.val} --summary {output.summary} > {log} 2>&1"
