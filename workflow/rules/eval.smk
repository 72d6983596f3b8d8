# Evaluation: sampled answers of one model (stage base | sft | rl) on one benchmark, and the
# consistency of consecutive stages (Base -> SFT, SFT -> RL).


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
        benchmark=benchmark_arg,
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/eval/{stage}/{backbone}/{run}/{benchmark}.log",
    shell:
        "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --model {params.model}"
        " {params.benchmark} --samples {output.samples} --summary {output.summary} > {log} 2>&1"


rule consistency:
    input:
        models=consistency_inputs,
        val="data/splits/val.jsonl",
    output:
        "results/consistency/{backbone}/{run}/{pair}.json",
    params:
        job=consistency_job,
        script=script("consistency"),
        model_a=consistency_model_a,
        model_b=consistency_model_b,
    threads: job_threads("consistency")
    resources:
        **job_resources("consistency"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/consistency/{backbone}/{run}/{pair}.log",
    shell:
        "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --model-a {params.model_a}"
        " --model-b {params.model_b} --val {input.val} --out {output} > {log} 2>&1"
