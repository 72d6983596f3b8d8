# Paper figures: each reads only small metric files.


rule figure1:
    input:
        **fig1_inputs(),
        code=plotting_code("figure1"),
    output:
        pdf="figures/fig1.pdf",
        png="figures/fig1.png",
    params:
        job=fig1_job,
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/figures/fig1.log",
    shell:
        "python {input.code[0]} --config {params.job} --sft-metrics {input.sft_metrics}"
        " --rl-evals {input.rl_evals} --pdf {output.pdf} --png {output.png} > {log} 2>&1"
