# Phase targets: one target rule per paper phase, the unit DVC works at (dvc.yaml has one stage per
# phase, whose cmd is `snakemake --allowed-rules <phase rules> phase_<name>`). They produce nothing:
# each only asks for every output of its phase's rules over the experiment grid of the config.
#   snakemake phase_sft          every SFT run (all methods, every GIFT β, every backbone)
#   snakemake phase_eval         every evaluation of the grid
# tests/test_dvc_pipeline.py checks that these targets and dvc.yaml's stages agree (rules, commands,
# outputs), and that together they cover exactly the DAG of `rule all`.


rule phase_world:
    input:
        PHASE_OUTPUTS["world"](),


rule phase_base:
    input:
        PHASE_OUTPUTS["base"](),


rule phase_split:
    input:
        PHASE_OUTPUTS["split"](),


rule phase_sft:
    input:
        PHASE_OUTPUTS["sft"](),


rule phase_grpo:
    input:
        PHASE_OUTPUTS["grpo"](),


rule phase_eval:
    input:
        PHASE_OUTPUTS["eval"](),


rule phase_analysis:
    input:
        PHASE_OUTPUTS["analysis"](),


rule phase_figures:
    input:
        PHASE_OUTPUTS["figures"](),


rule phase_all:
    input:
        phase_all_outputs(),
