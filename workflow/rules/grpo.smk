# GRPO (TRL) from the selected SFT epoch of each run, or from the base model (Direct RL).


rule grpo:
    input:
        init=lambda wildcards: grpo_init(wildcards)[0],
        rl="data/splits/rl.jsonl",
        dynamics=lambda wildcards: PLAN.dynamics_benchmark(wildcards.run),
    output:
        model=directory("models/rl/{backbone}/{run}"),
        metrics="results/rl/{backbone}/{run}/metrics.json",
        # trackers (giftlab.training.tracking): TensorBoard events, per-step curves for `dvc plots`
        tensorboard=directory("results/rl/{backbone}/{run}/tensorboard"),
        steps="results/steps/rl/{backbone}/{run}.csv",
    params:
        job=job("grpo"),
        runtime=runtime("grpo"),
        launch=launcher("grpo"),
        script=script("grpo"),
        init=lambda wildcards: grpo_init(wildcards)[1],
        work="work/rl/{backbone}/{run}",
        dynamics=lambda wildcards, input: f"--dynamics-benchmark {input.dynamics}" if input.dynamics else "",
    threads: job_threads("grpo")
    resources:
        **job_resources("grpo"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/grpo/{backbone}/{run}.log",
    benchmark:
        "logs/benchmark/grpo/{backbone}/{run}.tsv",
    shell:
        "GIFTLAB_THREADS={threads} {params.launch} {params.script} --config {params.job} --runtime {params.runtime}"
        " --init {params.init} --rl {input.rl} {params.dynamics} --out {output.model} --work {params.work}"
        " --metrics {output.metrics} --tensorboard {output.tensorboard} --steps {output.steps} > {log} 2>&1"
