"""Analyses of trained checkpoints (paper §4.4): geometric and distributional consistency."""

from giftlab.analysis.consistency import (
    DEFAULT_KS, KL_DIRECTION, consistency_metrics, cosine_per_position, decoder_layers,
    hidden_state_consistency, kl_per_position, last_layer_parameters, make_batches,
    parameter_consistency, response_consistency, tokenize_examples, topk_overlap_per_position,
)

__all__ = [
    "DEFAULT_KS", "KL_DIRECTION", "consistency_metrics", "cosine_per_position", "decoder_layers",
    "hidden_state_consistency", "kl_per_position", "last_layer_parameters", "make_batches",
    "parameter_consistency", "response_consistency", "tokenize_examples",
    "topk_overlap_per_position",
]
