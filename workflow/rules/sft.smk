# SFT: one job per (backbone, run); a run is a method, or GIFT at one β (giftlab.config.run_name).


rule sft:
    input:
        base=base_model_input,
        train="data/splits/sft.jsonl",
        val="data/splits/val.jsonl",
    output:
        model=directory("models/sft/{backbone}/{run}"),
        metrics="results/sft/{backbone}/{run}/metrics.json",
    params:
        job=sft_job,
        script=script("sft"),
        base=base_model_param,
        work="work/sft/{backbone}/{run}",
    threads: config.get("threads", 1)
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/sft/{backbone}/{run}.log",
    shell:
        "GIFTLAB_THREADS={threads} python {params.script} --config {params.job} --base {params.base}"
        " --train {input.train} --val {input.val} --out {output.model} --work {params.work}"
        " --metrics {output.metrics} > {log} 2>&1"
