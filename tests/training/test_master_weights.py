"""A policy loaded in bf16 (a hub base such as Qwen2.5-7B) trains fp32 master weights whatever the launch: accelerate's
FSDP upcasts it under mixed precision (the paper launch); one GPU, DDP and the CPU rehearsal trained bf16 weights."""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from giftlab.models import load_model
from giftlab.tinyworld.tokenizer import build_tokenizer
from giftlab.training.sharded import fp32_master_weights
from giftlab.training.sft import SFTSettings, train_sft

ROWS = [{"question": f"Start with {i}. Add 2. What is the result?", "final_answer": str(i + 2),
         "r1_solution_1": f"{i}+2={i + 2}\n\\boxed{{{i + 2}}}"} for i in range(1, 13)]


def adamw_step_changes(weight: torch.Tensor, lr: float) -> float:
    """The share of a weight's entries one AdamW step changes (Adam's first step moves each by ~lr)."""
    param = torch.nn.Parameter(weight.clone())
    opt = torch.optim.AdamW([param], lr=lr, weight_decay=0.0)
    param.grad = torch.randn_like(param)
    opt.step()
    return float((param.detach() != weight).float().mean())


def test_adamw_on_bf16_weights_rounds_most_updates_away():
    """Why: E.1's lr 1e-5 on weights of ~0.02 is ~5e-4 of each, under half of bf16's resolution (2^-8)."""
    weight = torch.randn(256, 256, generator=torch.Generator().manual_seed(0)) * 0.02
    assert adamw_step_changes(weight.to(torch.bfloat16), 1e-5) < 0.25  # 16% here: the smallest weights
    assert adamw_step_changes(weight, 1e-5) > 0.95


def test_a_bf16_policy_is_upcast_unless_accelerates_fsdp_does_it(monkeypatch):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)).to(torch.bfloat16)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # accelerate upcasts under mixed precision itself
    assert {p.dtype for p in fp32_master_weights(model).parameters()} == {torch.bfloat16}
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    assert {p.dtype for p in fp32_master_weights(model).parameters()} == {torch.float32}


def test_sft_trains_fp32_master_weights_from_a_bf16_base(base_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    bf16_base = tmp_path / "bf16-base"
    load_model(base_dir, dtype="bfloat16").save_pretrained(bf16_base)
    build_tokenizer(bf16_base)
    dtypes = set()

    class Dtypes(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            dtypes.update(p.dtype for p in model.parameters() if p.requires_grad)

    metrics = train_sft(base_path=str(bf16_base), tokenizer=build_tokenizer(), load_model=load_model,
                        train_rows=ROWS[:8], val_rows=ROWS[8:], solution_key="r1_solution_1", method="sft",
                        objective_params={}, settings=SFTSettings(epochs=1, batch_size=4, lr=1e-3, max_length=64,
                                                                  seed=0, export_dtype="bfloat16"),
                        out_dir=tmp_path / "out", work_dir=tmp_path / "work", job_config={"method": "sft"},
                        callbacks=[Dtypes()])
    assert dtypes == {torch.float32}, dtypes  # bf16 before: the base's own dtype
    assert metrics["steps"] == 2
    assert load_model(tmp_path / "out" / "epoch_1").dtype == torch.bfloat16  # the export keeps sft.export_dtype
