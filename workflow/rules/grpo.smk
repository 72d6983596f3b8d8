# GRPO (TRL) from the selected SFT epoch of each run.


rule grpo:
    input:
        sft="models/sft/{backbone}/{run}",
        rl="data/splits/rl.jsonl",
    output:
        model=directory("models/rl/{backbone}/{run}"),
        metrics="results/rl/{backbone}/{run}/metrics.json",
    params:
        job=grpo_job,
        script=script("grpo"),
        init=rl_init_param,
        work="work/rl/{backbone}/{run}",
    threads: config.get("threads", 1)
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/grpo/{backbone}/{run}.log",
    shell:
        "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --init {params.init}"
        " --rl {input.rl} --out {output.model} --work {params.work} --metrics {output.metrics} > {log} 2>&1"
