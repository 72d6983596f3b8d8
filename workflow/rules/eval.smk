# Evaluation: one job per model samples and grades all of its benchmarks (the model loads once), and the
# consistency of consecutive stages (Base -> SFT, SFT -> RL). Three rules, one per set of models (EVAL_RULES in
# giftlab.config): every final policy after RL on every benchmark; Direct SFT (a final policy without RL) likewise;
# the SFT checkpoints RL starts from on the reasoning benchmarks (Table 3, rl_gain).


for eval_rule, eval_spec in EVAL_RULES.items():

    rule:
        name:
            eval_rule
        input:
            model=lambda wildcards: stage_model(wildcards)[0],
            benchmarks=list(PLAN.benchmark_files(eval_spec["group"]).values()),
        output:
            summaries=eval_outputs(eval_spec["group"], "summary.json"),
            samples=eval_outputs(eval_spec["group"], "samples.jsonl"),
        params:
            job=job(eval_rule),
            runtime=runtime(eval_rule),
            script=script("evaluate"),
            model=lambda wildcards: stage_model(wildcards)[1],
            benchmarks=PLAN.benchmark_args(eval_spec["group"]),
            out_dir="results/eval/{stage}/{backbone}/{run}",
        wildcard_constraints:
            stage=eval_spec["stage"],
            run=eval_spec["run"],
        threads: job_threads("evaluate")
        resources:
            **job_resources("evaluate"),
        conda:
            "../envs/giftlab.yaml"
        log:
            "logs/eval/{stage}/{backbone}/{run}.log",
        benchmark:
            "logs/benchmark/eval/{stage}/{backbone}/{run}.tsv",
        shell:
            "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --runtime {params.runtime}"
            " --model {params.model} {params.benchmarks} --out-dir {params.out_dir} > {log} 2>&1"


rule consistency:
    input:
        models=pair_inputs,
        val="data/splits/val.jsonl",
    output:
        # the command says {output} (its one file): {output.result} would change the command, and Snakemake would
        # rerun the job in every workspace built before the name
        result="results/consistency/{backbone}/{run}/{pair}.json",
    params:
        job=job("consistency"),
        script=script("consistency"),
        model_a=pair_path(0),
        model_b=pair_path(1),
    threads: job_threads("consistency")
    resources:
        **job_resources("consistency"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/consistency/{backbone}/{run}/{pair}.log",
    benchmark:
        "logs/benchmark/consistency/{backbone}/{run}/{pair}.tsv",
    shell:
        "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --model-a {params.model_a}"
        " --model-b {params.model_b} --val {input.val} --out {output} > {log} 2>&1"
