"""Training: tiny-base pretraining (``pretrain``); the SFT and GRPO trainers live beside it."""
