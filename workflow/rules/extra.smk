# Checkpoints this pipeline did not train (config models.extra: the paper's released models, a colleague's),
# evaluated on demand, outside `rule all` and the DVC phases:  snakemake extra_models --configfile ...
# Each is scored on every benchmark with the grid's sampling, compared with its backbone's base where it names
# one, and tabulated in results/extra/extra_models.{csv,md,tex}.


rule evaluate_extra:
    input:
        model=lambda wildcards: extra_model(wildcards)[0],
        benchmarks=list(PLAN.benchmark_files("all").values()),
    output:
        summaries=expand("results/extra/eval/{{name}}/{benchmark}.summary.json", benchmark=PLAN.benchmarks()),
        samples=expand("results/extra/eval/{{name}}/{benchmark}.samples.jsonl", benchmark=PLAN.benchmarks()),
    params:
        job=job("evaluate_extra"),
        runtime=runtime("evaluate_extra"),
        script=script("evaluate"),
        model=lambda wildcards: extra_model(wildcards)[1],
        benchmarks=PLAN.benchmark_args("all"),
        out_dir="results/extra/eval/{name}",
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/extra/eval/{name}.log",
    benchmark:
        "logs/benchmark/extra/eval/{name}.tsv",
    shell:
        "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --runtime {params.runtime}"
        " --model {params.model} {params.benchmarks} --out-dir {params.out_dir} > {log} 2>&1"


rule consistency_extra:
    input:
        models=extra_base_input,
        val="data/splits/val.jsonl",
    output:
        # the command says {output} (its one file): {output.result} would change the command, and Snakemake would
        # rerun the job in every workspace built before the name
        result="results/extra/consistency/{name}.json",
    params:
        job=job("consistency_extra"),
        script=script("consistency"),
        model_a=extra_base,
        model_b=lambda wildcards: extra_model(wildcards)[1],
    threads: job_threads("consistency")
    resources:
        **job_resources("consistency"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/extra/consistency/{name}.log",
    benchmark:
        "logs/benchmark/extra/consistency/{name}.tsv",
    shell:
        "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --model-a {params.model_a}"
        " --model-b {params.model_b} --val {input.val} --out {output} > {log} 2>&1"


rule table_extra:
    input:
        results=PLAN.extra_results(),
        code=plotting_code("table"),
    output:
        csv="results/extra/extra_models.csv",
        md="results/extra/extra_models.md",
        tex="results/extra/extra_models.tex",
        provenance="results/extra/extra_models.provenance.json",
    params:
        job=job("table_extra"),
        stem=lambda wildcards, output: output.csv[: -len(".csv")],
    threads: job_threads("table", 1)
    resources:
        **job_resources("table"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/extra/table.log",
    benchmark:
        "logs/benchmark/extra/table.tsv",
    shell:
        "python {input.code[0]} --config {params.job} --results {input.results} --stem {params.stem} > {log} 2>&1"


rule extra_models:
    input:
        extra_targets,
