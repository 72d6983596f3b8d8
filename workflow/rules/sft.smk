# SFT: one job per (backbone, run); a run is an objective, GIFT at one β, or Direct SFT
# (giftlab.plan.RunSpec).


rule sft:
    input:
        base=base_input,
        train=lambda wildcards: PLAN.sft_train_files(wildcards.run),
        val="data/splits/val.jsonl",
        reference=lambda wildcards: PLAN.reference_caches(wildcards.backbone, wildcards.run),
    output:
        model=directory("models/sft/{backbone}/{run}"),
        metrics="results/sft/{backbone}/{run}/metrics.json",
        # trackers (giftlab.training.tracking): TensorBoard events, per-step curves for `dvc plots`
        tensorboard=directory("results/sft/{backbone}/{run}/tensorboard"),
        steps="results/steps/sft/{backbone}/{run}.csv",
    params:
        job=job("sft"),
        runtime=runtime("sft"),
        launch=launcher("sft"),
        script=script("sft"),
        base=base_dir,
        work="work/sft/{backbone}/{run}",
    threads: job_threads("sft")
    resources:
        **job_resources("sft"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/sft/{backbone}/{run}.log",
    benchmark:
        "logs/benchmark/sft/{backbone}/{run}.tsv",
    shell:
        "GIFTLAB_THREADS={threads} {params.launch} {params.script} --config {params.job} --runtime {params.runtime}"
        " --base {params.base} --train {input.train} --val {input.val} --out {output.model} --work {params.work}"
        " --metrics {output.metrics} --tensorboard {output.tensorboard} --steps {output.steps}"
        " --reference-cache {input.reference} > {log} 2>&1"


# The frozen base over one training split, once (sft.reference: cached): what GIFT, KD and ASFT read instead of
# a reference forward at every step (giftlab.training.reference: top-k log-probs, exact log p(y*), the error bound).
rule reference_cache:
    input:
        base=base_input,
        split="data/splits/{split}.jsonl",
    output:
        cache=PLAN.reference_cache("{backbone}", "{split}"),
        summary=PLAN.reference_cache("{backbone}", "{split}", "json"),
    params:
        job=job("reference_cache"),
        script=script("reference_cache"),
        base=base_dir,
        work="work/reference/{backbone}/{split}",
    threads: job_threads("reference_cache")
    resources:
        **job_resources("reference_cache"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/reference_cache/{backbone}/{split}.log",
    benchmark:
        "logs/benchmark/reference_cache/{backbone}/{split}.tsv",
    shell:
        "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --base {params.base}"
        " --split {input.split} --work {params.work} --out {output.cache} --summary {output.summary} > {log} 2>&1"
