# Evaluation: sampled answers of one model (stage base | sft | rl) on one benchmark.


rule evaluate:
    input:
        model=eval_model_input,
        benchmark=benchmark_file,
    output:
        summary="results/eval/{stage}/{backbone}/{run}/{benchmark}.summary.json",
        samples="results/eval/{stage}/{backbone}/{run}/{benchmark}.samples.jsonl",
    params:
        job=eval_job,
        script=script("evaluate"),
        model=eval_model_path,
    threads: config.get("threads", 1)
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/eval/{stage}/{backbone}/{run}/{benchmark}.log",
    shell:
        "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --model {params.model}"
        " --benchmark-file {input.benchmark} --samples {output.samples} --summary {output.summary} > {log} 2>&1"
