"""SFT batches: right padding with masked labels, and the positions that predict a response token.

Shared by the SFT trainer, the reference cache (giftlab.training.reference) and the consistency analysis, so all
three see the same tokens in the same order.
"""

from __future__ import annotations

import torch


class PadCollator:
    """Right padding; padded labels are -100 so they never count as response tokens."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, features):
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if "row" in features[0]:
            batch["row"] = torch.tensor([f["row"] for f in features])
        return batch


def response_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask over next-token positions (logits[:, :-1]) that predict a response token, and those targets."""
    shifted = labels[:, 1:]
    mask = shifted != -100
    return mask, shifted[mask]
