# SFT: one job per (backbone, run); a run is an objective, GIFT at one β, or Direct SFT
# (giftlab.plan.RunSpec).


rule sft:
    input:
        base=base_input,
        train=lambda wildcards: PLAN.sft_train_files(wildcards.run),
        val="data/splits/val.jsonl",
    output:
        model=directory("models/sft/{backbone}/{run}"),
        metrics="results/sft/{backbone}/{run}/metrics.json",
        # trackers (giftlab.training.tracking): TensorBoard events, per-step curves for `dvc plots`
        tensorboard=directory("results/sft/{backbone}/{run}/tensorboard"),
        steps="results/steps/sft/{backbone}/{run}.csv",
    params:
        job=job("sft"),
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
    shell:
        "GIFTLAB_THREADS={threads} {params.launch} {params.script} --config {params.job} --base {params.base}"
        " --train {input.train} --val {input.val} --out {output.model} --work {params.work}"
        " --metrics {output.metrics} --tensorboard {output.tensorboard} --steps {output.steps} > {log} 2>&1"
