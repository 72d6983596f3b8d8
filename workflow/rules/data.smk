# Split the DeepMath-schema problems into disjoint SFT / RL / validation subsets.


rule split:
    input:
        problems_input,
    output:
        sft="data/splits/sft.jsonl",
        rl="data/splits/rl.jsonl",
        val="data/splits/val.jsonl",
        summary="results/split.json",
    params:
        job=split_job,
        script=script("split"),
        problems=problems_path(),
    threads: job_threads("split", 1)
    resources:
        **job_resources("split"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/split.log",
    shell:
        "python {params.script} --config {params.job} --problems {params.problems}"
        " --sft {output.sft} --rl {output.rl} --val {output.val} --summary {output.summary} > {log} 2>&1"
