"""AdamW's weight decay on every parameter, as verl applies it: ``optim.AdamW(module.parameters(),
weight_decay=...)`` in its FSDP SFT trainer (the SFT stage of the verl GIFT ships) and its actor (GRPO; LUFFY
@ 01f4ae0, ReLIFT @ eb95454, whose SFT step does the same). The HF Trainer's default leaves biases and norm weights
undecayed (``Trainer.get_decay_parameter_names``); its pretraining of the tiny bases keeps that default."""

from __future__ import annotations


class DecayEveryParameter:
    """In front of an HF ``Trainer`` subclass (the SFT and GRPO trainers): every parameter in the decayed group."""

    def get_decay_parameter_names(self, model) -> list[str]:
        return [name for name, _ in model.named_parameters()]
