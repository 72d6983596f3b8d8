"""The SFT and GRPO stages' AdamW decays every parameter, as verl's FSDP SFT trainer and actor optimiser do
(``optim.AdamW(module.parameters(), weight_decay=...)``: the verl GIFT ships, LUFFY @ 01f4ae0, ReLIFT @ eb95454);
the HF Trainer's default leaves biases and norm weights out."""

import pytest

from giftlab.models import load_model
from giftlab.rl_methods import get_method
from giftlab.tinyworld.tokenizer import build_tokenizer
from giftlab.training.grpo import grpo_arguments, grpo_trainer_class, rl_dataset_rows

ROWS = [{"question": f"Start with {i}. Add 1. What is the result?", "final_answer": str(i + 1),
         "solution": f"{i} + 1 = {i + 1}. The answer is \\boxed{{{i + 1}}}."} for i in range(1, 5)]
CFG = dict(max_steps=1, lr=1e-3, lr_scheduler="constant", num_generations=2, prompts_per_generation=2,
           prompts_per_update=2, temperature=1.0, max_completion_length=40, weight_decay=0.01)


def _reward(prompts, completions, **_):
    return [0.0] * len(completions)


@pytest.mark.parametrize("method", [None, "luffy", "relift"])
def test_rl_adamw_decays_every_parameter_as_verl(base_dir, tmp_path, method):
    from datasets import Dataset
    from trl import GRPOConfig

    spec = get_method(method) if method else None
    params = spec.check({"sft_batch": 2, "sft_micro_batch": 1} if method == "relift" else {}) if spec else {}
    kwargs = grpo_arguments(CFG, tmp_path / "work", seed=0)
    if spec:
        kwargs.update(spec.grpo_overrides(params))
    kwargs.update(report_to=[], save_strategy="no")
    tok = build_tokenizer()
    data = Dataset.from_list(rl_dataset_rows(tok, ROWS, bool(spec), "solution"))
    model = load_model(str(base_dir))
    trainer = grpo_trainer_class(spec, params)(model=model, reward_funcs=[_reward], args=GRPOConfig(**kwargs),
                                               train_dataset=data, processing_class=tok)
    optimizer = trainer.create_optimizer()
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("norm" in n for n in names)  # the HF default would leave these undecayed
    assert {n: decay[id(p)] for n, p in model.named_parameters() if p.requires_grad} == {n: 0.01 for n in names}


def test_sft_adamw_decays_every_parameter_as_verls_sft_trainer(base_dir, tmp_path):
    """verl's FSDP SFT trainer (the SFT stage of the verl GIFT ships) is ``optim.AdamW(fsdp_model.parameters(),
    weight_decay=...)``: norm weights decay too."""
    from transformers import TrainingArguments

    from giftlab.objectives import get_objective
    from giftlab.training.sft import ObjectiveTrainer

    model = load_model(str(base_dir))
    args = TrainingArguments(output_dir=str(tmp_path), weight_decay=0.01, report_to=[], use_cpu=True)
    trainer = ObjectiveTrainer(model=model, args=args, objective=get_objective("sft"))
    optimizer = trainer.create_optimizer()
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("norm" in n for n in names)
    assert {n: decay[id(p)] for n, p in model.named_parameters() if p.requires_grad} == {n: 0.01 for n in names}


def test_sft_work_dir_of_the_older_optimizer_grouping_starts_afresh(base_dir, tmp_path, monkeypatch):
    """A run interrupted (or finished) before SFT decayed every parameter holds AdamW's state in the HF default's two
    groups under the same job config: resumed, torch refused it ("loaded state dict contains a parameter group that
    doesn't match the size of optimizer's group"), and a finished one was exported again without a step (README's
    `snakemake --forcerun sft` kept the older weights). Such a work dir starts afresh."""
    import json

    from transformers import Trainer

    from giftlab.provenance import config_hash
    from giftlab.training.checkpoints import FINGERPRINT
    from giftlab.training.sft import ObjectiveTrainer

    from test_sft_trainer import InterruptAfterSave, run  # tests/training is on sys.path (pytest's prepend mode)

    with monkeypatch.context() as old_code:  # the grouping before 15d803c, and its stamp (the job config alone)
        old_code.setattr(ObjectiveTrainer, "get_decay_parameter_names", Trainer.get_decay_parameter_names)
        with pytest.raises(KeyboardInterrupt):
            run(base_dir, tmp_path, callbacks=[InterruptAfterSave(1)])
    (tmp_path / "work" / FINGERPRINT).write_text(json.dumps({"config_hash": config_hash({"method": "sft"})}))
    metrics = run(base_dir, tmp_path)
    assert metrics.get("resumed_from") is None
    assert metrics["steps"] == 6


def test_grpo_work_dir_is_stamped_with_the_optimizer_grouping(tmp_path, monkeypatch):
    """The GRPO stage's checkpoints (plain GRPO, LUFFY, ReLIFT) changed grouping in 5d3159a, at any weight decay."""
    import giftlab.training.grpo as grpo

    class Stamped(Exception):
        pass

    def prepare(work_dir, job_config):
        raise Stamped(job_config)

    monkeypatch.setattr(grpo, "prepare_work_dir", prepare)
    job = {"backbone": "qwen", "run": "direct_rl"}
    with pytest.raises(Stamped) as stamped:
        grpo.train_grpo(init_path="x", load_model=None, tokenizer=None, rl_rows=[], cfg={}, seed=0,
                        out_dir=tmp_path / "out", work_dir=tmp_path / "work", job_config=job)
    assert stamped.value.args[0] != job and stamped.value.args[0]["optimizer_groups"] == "every parameter decayed"
