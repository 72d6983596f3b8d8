"""AdamW's weight decay on every parameter, as verl applies it: ``optim.AdamW(module.parameters(),
weight_decay=...)`` in its FSDP SFT trainer (the SFT stage of the verl GIFT ships) and its actor (GRPO; LUFFY
@ 01f4ae0, ReLIFT @ eb95454, whose SFT step does the same). The HF Trainer's default leaves biases and norm weights
undecayed (``Trainer.get_decay_parameter_names``); its pretraining of the tiny bases keeps that default."""

from __future__ import annotations

from typing import Any, Mapping

# What the optimiser state of a checkpoint is laid out as: one group of every parameter (the HF default's second
# group empty). A checkpoint written with the default's two groups (before 15d803c / 5d3159a) does not load into it
# (torch: "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"), and a
# finished one would be exported as this trajectory's without a step: part of the SFT and GRPO work dirs' stamp.
OPTIMIZER_GROUPS = "every parameter decayed"


def with_optimizer_groups(job_config: Mapping[str, Any]) -> dict[str, Any]:
    """``job_config`` as a work dir's stamp (:func:`giftlab.training.checkpoints.prepare_work_dir`) has it: with the
    optimiser's grouping, so checkpoints of the older one start afresh instead of crashing or being re-exported."""
    return {**job_config, "optimizer_groups": OPTIMIZER_GROUPS}


class DecayEveryParameter:
    """In front of an HF ``Trainer`` subclass (the SFT and GRPO trainers): every parameter in the decayed group."""

    def get_decay_parameter_names(self, model) -> list[str]:
        return [name for name, _ in model.named_parameters()]
