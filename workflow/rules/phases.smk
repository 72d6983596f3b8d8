# Phase targets: one target rule per paper phase, the unit DVC works at (dvc.yaml has one stage per
# phase, whose cmd is `snakemake --allowed-rules <phase rules> phase_<name>`). They produce nothing:
# each only asks for every output of its phase's rules over the experiment grid of the config.
#   snakemake phase_sft          every SFT run (all methods, every GIFT β, every backbone)
#   snakemake phase_eval         every evaluation of the grid
# tests/workflow/test_dvc_pipeline.py checks that these targets and dvc.yaml's stages agree (rules, commands,
# outputs), and that together they cover exactly the DAG of `rule all`.


rule phase_world:
    input:
        PLAN.phase_outputs("world"),


rule phase_base:
    input:
        PLAN.phase_outputs("base"),


rule phase_split:
    input:
        PLAN.phase_outputs("split"),


rule phase_sft:
    input:
        PLAN.phase_outputs("sft"),


rule phase_grpo:
    input:
        PLAN.phase_outputs("grpo"),


rule phase_eval:
    input:
        PLAN.phase_outputs("eval"),


rule phase_analysis:
    input:
        PLAN.phase_outputs("analysis"),


rule phase_mtbench:
    input:
        PLAN.phase_outputs("mtbench"),


rule phase_figures:
    input:
        PLAN.phase_outputs("figures"),


rule phase_all:
    input:
        PLAN.grid_outputs(),
