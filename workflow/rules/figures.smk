# Paper tables and figures. Each reads only small metric files, never a checkpoint, and depends on
# its plotting code so that a cosmetic change redraws it without rerunning any experiment.


rule figure1:
    input:
        **PLAN.fig1_inputs(),
        code=plotting_code("figure1"),
    output:
        pdf=report("figures/fig1.pdf", caption="../report/fig1.rst", category="Figures"),
        png="figures/fig1.png",
        provenance="figures/fig1.provenance.json",
    params:
        job=job("figure1"),
    threads: job_threads("figure1", 1)
    resources:
        **job_resources("figure1"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/figures/fig1.log",
    benchmark:
        "logs/benchmark/figures/fig1.tsv",
    shell:
        "python {input.code[0]} --config {params.job} --sft-metrics {input.sft_metrics}"
        " --rl-evals {input.rl_evals} --pdf {output.pdf} --png {output.png} --provenance {output.provenance} > {log} 2>&1"


rule figure2:
    input:
        consistency=PLAN.consistency_results(),
        code=plotting_code("figure2"),
    output:
        pdf=report("figures/fig2.pdf", caption="../report/fig2.rst", category="Figures"),
        png="figures/fig2.png",
        provenance="figures/fig2.provenance.json",
    params:
        job=job("figure2"),
    threads: job_threads("figure2", 1)
    resources:
        **job_resources("figure2"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/figures/fig2.log",
    benchmark:
        "logs/benchmark/figures/fig2.tsv",
    shell:
        "python {input.code[0]} --config {params.job} --consistency {input.consistency}"
        " --pdf {output.pdf} --png {output.png} --provenance {output.provenance} > {log} 2>&1"


rule figure3:
    input:
        rl_metrics=PLAN.rl_metrics(PLAN.compared_runs()),
        code=plotting_code("figure3"),
    output:
        pdf=report("figures/fig3.pdf", caption="../report/fig3.rst", category="Figures"),
        png="figures/fig3.png",
        provenance="figures/fig3.provenance.json",
    params:
        job=job("figure3"),
    threads: job_threads("figure3", 1)
    resources:
        **job_resources("figure3"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/figures/fig3.log",
    benchmark:
        "logs/benchmark/figures/fig3.tsv",
    shell:
        "python {input.code[0]} --config {params.job} --rl-metrics {input.rl_metrics}"
        " --pdf {output.pdf} --png {output.png} --provenance {output.provenance} > {log} 2>&1"


rule table:
    input:
        results=lambda wildcards: PLAN.table_inputs(int(wildcards.n)),
        code=plotting_code("table"),
    output:
        csv=report("results/tables/table{n}.csv", caption="../report/tables.rst", category="Tables"),
        md="results/tables/table{n}.md",
        tex="results/tables/table{n}.tex",
        provenance="results/tables/table{n}.provenance.json",
    params:
        job=job("table"),
        stem=lambda wildcards, output: output.csv[: -len(".csv")],
    threads: job_threads("table", 1)
    resources:
        **job_resources("table"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/tables/table{n}.log",
    benchmark:
        "logs/benchmark/tables/table{n}.tsv",
    shell:
        "python {input.code[0]} --config {params.job} --results {input.results} --stem {params.stem} > {log} 2>&1"


rule rl_gain:
    # What GRPO adds to each SFT/GIFT initialisation, paired over problems (same sampling seeds).
    input:
        pre=PLAN.rl_gain_samples("sft"),
        post=PLAN.rl_gain_samples("rl"),
        code=plotting_code("rl_gain"),
    output:
        csv=report("results/tables/rl_gain.csv", caption="../report/rl_gain.rst", category="Tables"),
        md="results/tables/rl_gain.md",
        tex="results/tables/rl_gain.tex",
        provenance="results/tables/rl_gain.provenance.json",
    params:
        job=job("rl_gain"),
        stem=lambda wildcards, output: output.csv[: -len(".csv")],
    threads: job_threads("rl_gain", 1)
    resources:
        **job_resources("rl_gain"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/tables/rl_gain.log",
    benchmark:
        "logs/benchmark/tables/rl_gain.tsv",
    shell:
        "python {input.code[0]} --config {params.job} --pre {input.pre} --post {input.post} --stem {params.stem} > {log} 2>&1"


rule claims:
    input:
        rl=PLAN.final_evals(),  # Tables 1 and 2: reasoning and out-of-distribution
        rl_samples=PLAN.final_eval_samples(),  # the same evaluations' samples: paired tests over problems
        pre_rl=PLAN.pre_rl_evals(),
        pre_rl_samples=PLAN.pre_rl_eval_samples(),  # claim 2: the pass@k advantage's growth paired over problems
        consistency=PLAN.consistency_results(),
        code=plotting_code("claims"),
    output:
        claims=report("results/tables/claims.md", caption="../report/claims.rst", category="Summary"),
        provenance="results/tables/claims.provenance.json",
    params:
        job=job("claims"),
    threads: job_threads("claims", 1)
    resources:
        **job_resources("claims"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/tables/claims.log",
    benchmark:
        "logs/benchmark/tables/claims.tsv",
    shell:
        "python {input.code[0]} --config {params.job} --rl {input.rl} --rl-samples {input.rl_samples}"
        " --pre-rl {input.pre_rl} --pre-rl-samples {input.pre_rl_samples} --consistency {input.consistency} --out {output.claims} --provenance {output.provenance} > {log} 2>&1"


rule summary:
    # Small flat files for `dvc metrics show/diff` and `dvc plots show/diff` (dvc.yaml).
    input:
        sft=PLAN.sft_metrics(PLAN.compared_runs()),
        rl=PLAN.main_rl_evals(),
        code=plotting_code("summary"),
    output:
        **SUMMARY,
    params:
        job=job("summary"),
    threads: job_threads("summary", 1)
    resources:
        **job_resources("summary"),
    conda:
        "../envs/giftlab.yaml"
    log:
        "logs/figures/summary.log",
    benchmark:
        "logs/benchmark/figures/summary.tsv",
    shell:
        "python {input.code[0]} --config {params.job} --sft {input.sft} --rl {input.rl}"
        " --metrics {output.metrics} --val-loss {output.val_loss} --pass1 {output.pass1}"
        " --provenance {output.provenance} > {log} 2>&1"
