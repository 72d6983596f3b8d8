"""LUFFY and ReLIFT inside TRL's GRPOTrainer, on a tiny random model: the expert trace is the last member of each
group, is scored like a rollout and moves the gradient; ReLIFT's buffer fills from failed groups and its SFT step
fires, changes the weights, and survives a resume."""

import json

import pytest
import torch

from giftlab.models import load_model
from giftlab.rl_methods import get_method
from giftlab.tinyworld.tokenizer import build_tokenizer
from giftlab.training.grpo import grpo_arguments, rl_dataset_rows, train_grpo

G = 4
RL_ROWS = [{"question": f"Start with {i}. Add 1. What is the result?", "final_answer": str(i + 1),
            "solution": f"{i} + 1 = {i + 1}. The answer is \\boxed{{{i + 1}}}."} for i in range(1, 9)]
CFG = dict(max_steps=2, lr=1e-3, lr_scheduler="constant", num_generations=G, prompts_per_generation=2,
           prompts_per_update=2, temperature=1.0, max_completion_length=40, save_steps=1, grading_timeout=10)


def boxed_reward(prompts, completions, final_answer, **_):
    """1 when the completion boxes the gold answer (a demonstration does; a random tiny model does not)."""
    return [1.0 if f"\\boxed{{{gold}}}" in text else 0.0 for text, gold in zip(completions, final_answer)]


def _trainer(base_dir, tmp_path, method: str, params=None, rows=RL_ROWS, **cfg):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    spec = get_method(method)
    params = spec.check(params)
    tok = build_tokenizer()
    kwargs = grpo_arguments({**CFG, **cfg}, tmp_path / "work", seed=0)
    kwargs.update(spec.grpo_overrides(params), report_to=[], save_strategy="no")
    data = Dataset.from_list(rl_dataset_rows(tok, rows, True, "solution"))
    trainer_class = spec.trainer_class(GRPOTrainer, params)
    return trainer_class(model=load_model(str(base_dir)), reward_funcs=[boxed_reward], args=GRPOConfig(**kwargs),
                         train_dataset=data, processing_class=tok)


def _group_inputs(trainer, rows):
    """A generation batch as TRL's sampler makes it: each row repeated G times."""
    return [dict(trainer.train_dataset[i]) for i in rows for _ in range(G)]


def test_luffy_groups_end_with_the_demonstration_which_is_scored_and_trained_on(base_dir, tmp_path):
    trainer = _trainer(base_dir, tmp_path, "luffy")
    trainer.model.train()
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(_group_inputs(trainer, [0, 1]))
    tok = trainer.processing_class
    assert out["is_expert"].tolist() == [False, False, False, True] * 2
    for group, row in enumerate([0, 1]):
        ids = out["completion_ids"][group * G + G - 1][out["completion_mask"][group * G + G - 1].bool()].tolist()
        assert ids == tok(RL_ROWS[row]["solution"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    # the demonstration boxes the gold answer: reward 1, the random rollouts 0, so A = 1 − 1/4 and −1/4
    adv = out["advantages"].tolist()
    assert adv == pytest.approx([-0.25, -0.25, -0.25, 0.75] * 2)

    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train()

    def gradient(batch):
        trainer.model.zero_grad()
        trainer._compute_loss(trainer.model, batch).backward()
        return torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]).clone()

    grad = gradient(out)
    # the same batch with the expert rows' tokens changed: the gradient changes (they are in the loss) ...
    changed = dict(out)
    changed["completion_ids"] = out["completion_ids"].clone()
    changed["completion_ids"][out["is_expert"], :3] = tok("999", add_special_tokens=False)["input_ids"][0]
    assert not torch.allclose(grad, gradient(changed))
    # ... and with them masked out, it changes too: the expert trace is more than a member of the mean
    masked = dict(out)
    masked["completion_mask"] = out["completion_mask"] * (~out["is_expert"]).unsqueeze(1)
    assert not torch.allclose(grad, gradient(masked))


def test_luffy_refuses_groups_without_a_rollout(base_dir, tmp_path):
    with pytest.raises(ValueError, match="expert_samples must be < grpo.num_generations"):
        _trainer(base_dir, tmp_path, "luffy", {"expert_samples": G})


def test_relift_buffers_groups_that_all_fail_and_sft_step_fires_when_full(base_dir, tmp_path):
    trainer = _trainer(base_dir, tmp_path, "relift", {"sft_batch": 2, "sft_micro_batch": 1})
    trainer.model.train()
    torch.manual_seed(0)
    trainer._generate_and_score_completions(_group_inputs(trainer, [3, 5]))  # random rollouts: all fail
    assert trainer._relift_buffer.items == [3, 5]
    trainer._generate_and_score_completions(_group_inputs(trainer, [6, 7]))
    assert trainer._relift_buffer.items == [6, 7, 3, 5]  # the newest in front, as the released code concatenates

    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.state.global_step = 1  # the end of a generation batch (one update per batch here)
    trainer._relift_step_end()
    assert trainer._relift_buffer.items == [3, 5] and trainer._relift_steps == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert trainer._metrics["train"]["relift/sft_nll"][-1] > 0


def _run(base_dir, tmp_path, method, params, callbacks=(), **cfg):
    tok = build_tokenizer()
    return train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=tok, rl_rows=RL_ROWS,
                      cfg={**CFG, **cfg}, seed=0, out_dir=tmp_path / "out", work_dir=tmp_path / "work",
                      job_config={"run": method}, extra_callbacks=callbacks, rl_method=method,
                      method_params=params, solution_key="solution")


class InterruptAfterSave:
    def __init__(self, step):
        from transformers import TrainerCallback

        self.step = step
        self.__class__ = type("Interrupt", (InterruptAfterSave, TrainerCallback), {})

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated kill")


def test_relift_trains_through_train_grpo_and_keeps_its_buffer_across_a_resume(base_dir, tmp_path):
    params = {"sft_batch": 2, "sft_micro_batch": 2, "entropy_coef": 0.0}
    with pytest.raises(KeyboardInterrupt):
        _run(base_dir, tmp_path, "relift", params, callbacks=[InterruptAfterSave(1)], max_steps=3)
    state = torch.load(tmp_path / "work" / "checkpoint-1" / "relift_state-rank0.pt", weights_only=False)
    assert state["sft_steps"] == 1 and state["buffer"]["batch_size"] == 2
    metrics = _run(base_dir, tmp_path, "relift", params, max_steps=3)
    assert metrics["resumed_from"].endswith("checkpoint-1") and metrics["steps"] == 3
    assert metrics["rl_method"] == "relift" and metrics["method_params"]["sft_batch"] == 2
    sft_steps = [row["relift/sft_steps"] for row in metrics["log"] if "relift/sft_steps" in row]
    assert sft_steps and sft_steps[-1] >= 2  # the count carried over the resume
    assert json.loads((tmp_path / "out" / "config.json").read_text())


def test_relift_resumed_inside_a_rollout_batch_ends_where_an_uninterrupted_run_ends(base_dir, tmp_path):
    # two updates per generation batch: checkpoint-1 falls between them. Before the rollout state was saved, the
    # rerun generated that batch again (adding its failed questions to the buffer twice) and its SFT step fired
    # after the first update of each batch instead of the second.
    from safetensors.torch import load_file

    params = {"sft_batch": 2, "sft_micro_batch": 2, "entropy_coef": 0.0}
    cfg = dict(max_steps=4, prompts_per_generation=4)
    straight = _run(base_dir, tmp_path / "straight", "relift", params, **cfg)
    with pytest.raises(KeyboardInterrupt):
        _run(base_dir, tmp_path / "resumed", "relift", params, callbacks=[InterruptAfterSave(1)], **cfg)
    resumed = _run(base_dir, tmp_path / "resumed", "relift", params, **cfg)
    assert resumed["resumed_from"].endswith("checkpoint-1")
    for key in ("loss", "relift/sft_steps", "relift/buffer"):
        assert [r.get(key) for r in resumed["log"]] == [r.get(key) for r in straight["log"]], key
    weights = [load_file(tmp_path / name / "out" / "model.safetensors") for name in ("straight", "resumed")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_luffy_trains_through_train_grpo(base_dir, tmp_path):
    # two updates per generation batch (as the paper's 128 / 64): π_old is the sampling policy, the batch is
    # shuffled and split with the expert flags
    metrics = _run(base_dir, tmp_path, "luffy", {}, max_steps=2, prompts_per_generation=4)
    assert metrics["steps"] == 2 and metrics["rl_method"] == "luffy"
    steps = [row for row in metrics["log"] if "loss" in row]
    # measured where the batch is generated (step 1 of each pair)
    assert [row.get("luffy/expert_fraction") for row in steps] == [pytest.approx(1 / G), None]
    assert all(0 < row["luffy/expert_token_prob"] < 1 for row in steps)


# ------------------------------------------------------------------ demonstrations longer than the completion length
LONG = {"question": "Start with 20. Add 1. What is the result?", "final_answer": "21",
        "solution": "Let me think. " * 4 + "20 + 1 = 21. The answer is \\boxed{21}."}  # 95 tokens with EOS > 40


def test_demonstrations_that_fit_keeps_whole_demonstrations_only():
    from giftlab.training.grpo import demonstrations_that_fit

    tok = build_tokenizer()
    rows = rl_dataset_rows(tok, [LONG, *RL_ROWS[:3]], True, "solution")
    n = len(tok(RL_ROWS[0]["solution"], add_special_tokens=False)["input_ids"]) + 1  # 36 with EOS
    kept, dropped = demonstrations_that_fit(tok, rows, n, chunk=2)
    assert dropped == 1 and [r["row"] for r in kept] == [1, 2, 3]  # the question keeps its index
    assert demonstrations_that_fit(tok, rows, n - 1) == ([], 4)   # one token short: EOS would not fit


@pytest.mark.parametrize("method", ["luffy", "relift"])
def test_a_demonstration_longer_than_the_completion_length_is_dropped_and_counted(base_dir, tmp_path, method):
    # cut at max_completion_length it lost its boxed answer: LUFFY scored the expert trace 0 and pushed it down
    # whenever a rollout of its group succeeded, ReLIFT imitated a trace with no answer and no EOS
    # 9 rows fill 4 generation batches of 2 (max_steps 4: one pass, E.2's "1 epoch"); the 7 kept fill 3, so the run
    # stops after 3 steps instead of taking a kept prompt a second time
    metrics = train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(),
                         rl_rows=[LONG, LONG, *RL_ROWS[:7]], cfg={**CFG, "max_steps": 4}, seed=0,
                         out_dir=tmp_path / "out", work_dir=tmp_path / "work", job_config={"run": method},
                         rl_method=method, method_params={"sft_batch": 2} if method == "relift" else {},
                         solution_key="solution")
    assert metrics["steps"] == 3
    assert metrics["demonstrations"] == {"max_tokens": CFG["max_completion_length"], "kept": 7, "dropped": 2,
                                         "max_steps": 3}


def test_runs_on_kept_rows_see_no_prompt_more_often_than_plain_grpo():
    from giftlab.training.grpo import max_steps_for_kept_rows

    paper = {"max_steps": 156, "prompts_per_generation": 128, "prompts_per_update": 64}
    assert max_steps_for_kept_rows(paper, 10_000, 10_000) == 156
    assert max_steps_for_kept_rows(paper, 9_000, 10_000) == 140          # 70 whole batches of 128, 2 steps each
    assert max_steps_for_kept_rows({**paper, "max_steps": 100}, 9_000, 10_000) == 100  # fits in the kept pass
    several = {"max_steps": 120, "prompts_per_generation": 16, "prompts_per_update": 16}  # mini: ~2 passes of 62
    assert max_steps_for_kept_rows(several, 500, 1_000) == 120 * 31 // 62
    assert max_steps_for_kept_rows({**paper, "max_steps": 0}, 9_000, 10_000) == 0   # one epoch: the Trainer counts


def test_no_demonstration_short_enough_is_one_line(base_dir, tmp_path):
    with pytest.raises(ValueError, match=r"^no RL row left for luffy: all 1 demonstrations \('solution'\) are longer "
                                         r"than grpo.max_completion_length = 40 tokens with EOS$"):
        train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(), rl_rows=[LONG],
                   cfg=CFG, seed=0, out_dir=tmp_path / "out", work_dir=tmp_path / "work", job_config={"run": "luffy"},
                   rl_method="luffy", method_params={}, solution_key="solution")


def test_fewer_rows_left_than_one_generation_batch_is_one_line(base_dir, tmp_path):
    # the Trainer drops a partial generation batch: the run would train no step and export its starting model
    with pytest.raises(ValueError, match=r"^luffy: 1 RL rows left with a demonstration that fits "
                                         r"grpo.max_completion_length = 40 tokens \(1 dropped\), fewer than one "
                                         r"generation batch \(grpo.prompts_per_generation = 2\)$"):
        train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(),
                   rl_rows=[LONG, RL_ROWS[0]], cfg=CFG, seed=0, out_dir=tmp_path / "out", work_dir=tmp_path / "work",
                   job_config={"run": "luffy"}, rl_method="luffy", method_params={}, solution_key="solution")


def test_plain_grpo_keeps_every_row(base_dir, tmp_path):
    # plain GRPO trains on no demonstration: its rows are not filtered, and its metrics carry no count
    metrics = train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=build_tokenizer(),
                         rl_rows=[LONG], cfg={**CFG, "max_steps": 1, "prompts_per_generation": 1,
                                              "prompts_per_update": 1}, seed=0, out_dir=tmp_path / "out",
                         work_dir=tmp_path / "work", job_config={"run": "grpo"}, solution_key="solution")
    assert metrics["steps"] == 1 and "demonstrations" not in metrics


def test_a_trainer_given_a_too_long_demonstration_refuses_it_instead_of_cutting_it(base_dir, tmp_path):
    # a trainer built on unfiltered rows (train_grpo filters them): the expert trace is never a cut one
    trainer = _trainer(base_dir, tmp_path, "luffy", rows=[LONG, *RL_ROWS])
    trainer.model.train()
    with pytest.raises(ValueError, match=r"^a demonstration of 95 tokens with EOS is longer than "
                                         r"max_completion_length \(40\)"):
        trainer._generate_and_score_completions(_group_inputs(trainer, [0, 1]))


def test_relift_resumes_one_process_from_the_older_single_state_file(base_dir, tmp_path):
    # older checkpoints hold one relift_state.pt (process 0's); one process reads it as its own, several refuse it
    # (tests/training/test_sharded.py: under FSDP the other processes' optimiser shards are not in it)
    trainer = _trainer(base_dir, tmp_path, "relift", {"sft_batch": 2})
    trainer._relift_init()
    folder = tmp_path / "checkpoint-1"
    folder.mkdir()
    torch.save({"buffer": {"batch_size": 2, "items": [4, 1]}, "sft_steps": 3,
                "optimizer": trainer._relift_optimizer.state_dict()}, folder / "relift_state.pt")
    trainer._load_optimizer_and_scheduler(str(folder))
    assert trainer._relift_buffer.items == [4, 1] and trainer._relift_steps == 3


class _CpuProcessOfSeveral:
    """The trainer's accelerator as a CPU process of a multi-process launch sees it (the rehearsal's DDP over gloo):
    accelerate 1.15 gives every such process the device ``cpu:0`` (measured under ``torchrun --nproc_per_node 2``)."""

    def __init__(self, accelerator):
        self._accelerator = accelerator
        self.device = torch.device("cpu", 0)

    def __getattr__(self, name):
        return getattr(self._accelerator, name)


def test_relift_resumes_on_a_cpu_process_of_several(base_dir, tmp_path):
    # torch.load(map_location=cpu:0) refuses any saved tensor ("don't know how to restore data location"): a resumed
    # multi-process CPU run (the rehearsal's launch) stopped at the SFT optimiser's moments
    trainer = _trainer(base_dir, tmp_path, "relift", {"sft_batch": 2})
    trainer._relift_init()
    trainer.model(input_ids=torch.tensor([[3, 4, 5]])).logits.sum().backward()
    trainer._relift_optimizer.step()
    folder = tmp_path / "checkpoint-1"
    folder.mkdir()
    torch.save({"buffer": {"batch_size": 2, "items": [4, 1]}, "sft_steps": 1,
                "optimizer": trainer._relift_optimizer.state_dict()}, folder / "relift_state-rank0.pt")
    saved = {k: v.clone() for k, v in next(iter(trainer._relift_optimizer.state.values())).items()}
    restored = _trainer(base_dir, tmp_path, "relift", {"sft_batch": 2})
    restored.accelerator = _CpuProcessOfSeveral(restored.accelerator)
    restored._load_optimizer_and_scheduler(str(folder))
    assert restored._relift_buffer.items == [4, 1] and restored._relift_steps == 1
    got = next(iter(restored._relift_optimizer.state.values()))
    assert all(torch.equal(got[k], saved[k]) for k in saved)


class _OneOfTwoProcesses:
    """The trainer's accelerator as process 0 of 2 sees it (one process here: DDP's average is not applied)."""

    def __init__(self, accelerator):
        self._accelerator = accelerator
        self.process_index, self.num_processes = 0, 2

    def __getattr__(self, name):
        return getattr(self._accelerator, name)


def test_relift_sft_step_scales_and_decays_as_released(base_dir, tmp_path):
    # released sft_update_policy: each micro-batch's loss / (sft_batch / sft_micro_batch) however many micro-batches
    # this process holds (with W processes: the batch mean / W after the average), AdamW weight decay 0.01
    from giftlab.rl_methods.relift import sft_loss

    trainer = _trainer(base_dir, tmp_path, "relift", {"sft_batch": 4, "sft_micro_batch": 1, "sft_max_grad_norm": 1e9})
    trainer._relift_init()
    assert [g["weight_decay"] for g in trainer._relift_optimizer.param_groups] == [0.01]
    trainer.accelerator = _OneOfTwoProcesses(trainer.accelerator)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    grads = []
    trainer._relift_optimizer.step = lambda: grads.append([p.grad.clone() for p in params])
    trainer._relift_sft_step([0, 1, 2, 3])  # this process: questions 0 and 2, one micro-batch each

    trainer.model.zero_grad()
    for q in (0, 2):  # their mean loss, by hand
        ids, mask, labels = trainer._relift_batch(trainer.processing_class, [q])
        logits = trainer.model(input_ids=ids, attention_mask=mask).logits
        (sft_loss(logits[:, :-1], labels[:, 1:], 0.001)[0] / 2).backward()
    for got, mean in zip(grads[0], (p.grad for p in params)):
        torch.testing.assert_close(got, mean / 2)  # 2 of the 4 micro-batches: / 4 each, the mean / 2


def test_relift_sft_split_gives_every_process_as_many_micro_batches():
    from giftlab.rl_methods.relift import check_sft_split

    check_sft_split({"sft_batch": 128, "sft_micro_batch": 1}, 8)  # the paper: 16 each
    check_sft_split({"sft_batch": 10, "sft_micro_batch": 4}, 8)  # 1 or 2 demonstrations: one micro-batch each
    with pytest.raises(ValueError, match="unified.relift.sft_batch: 4 demonstrations over 8 processes"):
        check_sft_split({"sft_batch": 4, "sft_micro_batch": 1}, 8)  # half of them with none


def test_relift_sft_metrics_pool_every_process_share(base_dir, tmp_path, monkeypatch):
    """Process r trains questions[r::W]; the step log (the main process's) holds the mean over every process's
    micro-batches. Here process 0 of 2: the other's share (one micro-batch, NLL 9, entropy 5) comes through the
    gather as accelerate's does (concatenated in process order)."""
    trainer = _trainer(base_dir, tmp_path, "relift", {"sft_batch": 2, "sft_micro_batch": 1})
    trainer.model.train()
    trainer._relift_init()
    own = {}

    def gather(tensor):
        own["stats"] = tensor.tolist()
        return torch.cat([tensor, torch.tensor([9.0, 5.0, 1.0], dtype=tensor.dtype)])

    monkeypatch.setattr(trainer.accelerator, "gather", gather)
    monkeypatch.setattr(type(trainer.accelerator), "num_processes", property(lambda self: 2))
    trainer._relift_sft_step([3, 5])  # process 0 trains question 3
    nll, ent, n = own["stats"]
    assert n == 1
    assert trainer._metrics["train"]["relift/sft_nll"][-1] == pytest.approx((nll + 9.0) / 2)
    assert trainer._metrics["train"]["relift/sft_entropy"][-1] == pytest.approx((ent + 5.0) / 2)


@pytest.mark.parametrize("method", ["luffy", "relift"])
def test_rl_entropy_bonus_is_weighed_as_in_the_released_update(base_dir, tmp_path, method):
    # two slices of one update (grad_accum 2): the coefficient is the update's (both slices' tokens), and the loss is
    # the policy term minus that coefficient × token-mean entropy, over the accumulation steps
    from giftlab.rl_methods.base import released_entropy_coef

    params = {"released_gpus": 2, "released_micro_batch_tokens": 50}
    extra = {"sft_batch": 2, "sft_micro_batch": 1} if method == "relift" else {}
    trainer = _trainer(base_dir, tmp_path, method, {**params, **extra}, grad_accum=2)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 2  # set by Trainer.train()
    torch.manual_seed(0)
    inputs = trainer._prepare_inputs(_group_inputs(trainer, [0, 1]))
    slices = trainer._buffered_inputs
    assert len(slices) == 2 and trainer._step == 0
    tokens = sum(int(b["prompt_mask"].sum() + b["completion_mask"].sum()) for b in slices)
    expected = released_entropy_coef(0.001, tokens, 2 * G, 2, 50)
    assert expected != pytest.approx(0.001)
    loss = trainer._compute_loss(trainer.model, inputs)
    metrics = trainer._metrics["train"]
    assert metrics["entropy_coef"][-1] == pytest.approx(expected)
    assert (loss * 2).item() == pytest.approx(metrics["policy_loss"][-1] - expected * metrics["entropy"][-1], rel=1e-5)
