"""The FSDP paths of training on CPU: torch FSDP2 over 2 gloo processes (tests/dist/fsdp2_paths.py), and the export
check that stops a job whose checkpoint would not load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from giftlab.models import build_tiny_model
from giftlab.training.checkpoints import verify_export
from helpers import REPO, two_process_ranks, venv_env

pytestmark = pytest.mark.slow  # scheduled early on the two workers (tests/conftest.py)


@pytest.fixture(scope="module")
def fsdp2_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp2")
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "dist" / "fsdp2_paths.py"), str(out)]
    proc = subprocess.run(cmd, env=venv_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_chunked_head_inside_the_forward_matches_the_unsharded_model(fsdp2_results):
    for rank in fsdp2_results:
        assert rank["lm_head_is_sharded"]                 # the root unit really holds lm_head as shards
        assert rank["loss_diff"] < 1e-5 and rank["grad_diff"] < 1e-6, rank


def test_reading_lm_head_outside_the_forward_fails_under_fsdp(fsdp2_results):
    """The pre-fix path (decoder + get_output_embeddings().weight) does not run on a sharded model."""
    for rank in fsdp2_results:
        assert not rank["old_path"].startswith("ran: loss differs by 0"), rank["old_path"]


def test_export_of_a_sharded_model_holds_every_weight(fsdp2_results):
    rank0, rank1 = fsdp2_results
    assert rank0["export_keys_equal"] and rank0["export_max_diff"] == 0.0 and rank0["export_verified"]
    assert rank1["nonzero_rank_state_is_empty"]          # gathered on the main process only
    assert "no weights written" in rank0["empty_export_error"]
    assert rank0["snapshot_max_diff"] == rank1["snapshot_max_diff"] == 0.0  # PSFT's snapshot, on every process
    # ... one weight at a time, also under activation checkpointing's wrapped names
    assert rank0["checkpointed_snapshot_max_diff"] == rank1["checkpointed_snapshot_max_diff"] == 0.0
    for rank in fsdp2_results:  # of a bf16 mixed-precision policy: its forward exactly, not an fp32 copy's
        assert rank["mixed_forward_dtype"] == "torch.bfloat16"
        assert rank["mixed_snapshot_logit_diff"] == 0.0 < rank["mixed_fp32_snapshot_logit_diff"], rank


def test_generate_on_the_sharded_model(fsdp2_results):
    """Greedy tokens equal the unsharded model's; each FSDP2 unit is gathered once for the whole generate (kept
    between decode steps), then resharded with its setting restored for training."""
    for rank in fsdp2_results:
        assert rank["generate_equal"] and rank["kept_unsharded_during_generate"]
        assert rank["resharded_after_generate"] and rank["reshard_settings_restored"]
        assert rank["first_forward_settings_None"] and rank["first_forward_settings_True"]  # step 0's evaluation
        assert rank["resharded_after_a_failed_generate"]


def test_the_paper_launchs_own_fsdp2_layout(tmp_path):
    """accelerate 1.15's fsdp2_apply_ac + fsdp2_prepare_model (the paper launch's, tests/dist/accelerate_layout.py):
    the chunked head's loss and gradients, generate, the export and PSFT's snapshot equal the unsharded model's; under
    bf16 with verl's reduction set on the plugin every unit reduces in fp32."""
    for rank in two_process_ranks("accelerate_layout.py", out=tmp_path):
        # parameters per unit: the checkpoint wrappers are units of their own, empty; norm + lm_head one unit
        assert rank["units"] == {"<root>": 0, "model.embed_tokens": 1, "model.layers.0": 0,
                                 "model.layers.0._checkpoint_wrapped_module": 12, "model.layers.1": 0,
                                 "model.layers.1._checkpoint_wrapped_module": 12, "model.norm": 2, "lm_head": 2}
        # the loss summed from two ranks' parts in another order than the whole: fp32 rounding (7.6e-6 on an AMD EPYC's
        # kernels), the bound of test_chunked_head_inside_the_forward_matches_the_unsharded_model's loss
        assert rank["loss_diff"] < 1e-5 and rank["grad_diff"] < 1e-6 and rank["without_grad"] == []
        assert rank["generate_equal"] and rank.get("export_equal", True) and rank["snapshot_max_diff"] == 0
        assert rank["mixed_policies"] == ["torch.bfloat16/torch.float32/None"]


def test_rl_dynamics_split_the_problems_over_the_processes(fsdp2_results):
    """Figure 3's evaluation during an FSDP GRPO run: each process samples and grades its share (5 problems x 3
    samples: 9 and 6 responses; every process used to do all 15), and the row is the unsharded model's over all."""
    rank0, rank1 = fsdp2_results
    assert rank0["dynamics_graded"] == [9] and rank1["dynamics_graded"] == [6]
    for rank in fsdp2_results:
        row, want = rank["dynamics_row"], rank["dynamics_unsharded"]
        assert {k: row[k] for k in want} == want
        assert row["n_problems"] == 5 and row["grading"] == {}  # a plain function: no pool counters
        # and the policy trains on: generating under inference mode left FSDP2's gathered parameters inference
        # tensors, and the next step's all-gather into them failed
        assert rank["trains_after_dynamics"] == "ok"


def test_rl_dynamics_with_one_sample_per_problem_keeps_the_ranks_in_step(fsdp2_results):
    """eval_samples 1 (or temperature 0): only the padded rank's batch repeats a prompt (its share's padding), and
    shared_prefix_cache ran the prefix forward on that rank alone: the sharded ranks' forwards fell out of step and
    the job hung. The row is the unsharded model's."""
    for rank in fsdp2_results:
        assert rank["greedy_row"]["n_problems"] == 5
        assert rank["greedy_row"] == pytest.approx(rank["greedy_unsharded"])


def test_validation_splits_the_examples_over_the_processes(fsdp2_results):
    """SFT's validation at each epoch's end, FSDP2 over 2 processes through the chunked head: rank 0 reads examples
    0, 2, 4, rank 1 examples 1, 3 and runs its first batch again (uncounted) to keep the forwards in step; the
    all-reduced cross-entropy is the unsharded model's over all 5 (every process used to read all of them)."""
    rank0, rank1 = fsdp2_results
    assert rank0["val_rows"] == [[0, 2], [4]] and rank1["val_rows"] == [[1, 3], [1, 3]]
    for rank in fsdp2_results:
        assert rank["val_ce"] == pytest.approx(rank["val_ce_unsharded"], rel=1e-5)


def test_relift_each_process_saves_and_restores_its_own_sft_optimiser_shard(tmp_path):
    """FSDP2 over 2 gloo processes (tests/dist/relift_fsdp2.py): ReLIFT's SFT AdamW holds each process's own shard
    of the moments. Process 0 alone saved it and every process loaded that file, so process 1 resumed with
    process 0's moments; now each process writes and reads its own file, both written before the save returns."""
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "dist" / "relift_fsdp2.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=venv_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for rank in (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)):
        assert rank["files_when_save_returned"] == ["relift_state-rank0.pt", "relift_state-rank1.pt"], rank
        assert rank["shards_differ"] and rank["restored_own_shard"], rank
        assert rank["buffer"] == [3, 1, 2] and rank["sft_steps"] == 5
        assert rank["legacy"].startswith(f"{tmp_path}/legacy/checkpoint-3/relift_state.pt: one ReLIFT state for all "
                                         f"2 processes") and "\n" not in rank["legacy"], rank


@pytest.fixture
def saved(tmp_path):
    model = build_tiny_model("llama", vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=32, tie_word_embeddings=True)
    model.save_pretrained(tmp_path / "ok")
    return model, tmp_path


def test_verify_export_accepts_a_saved_model_with_tied_weights(saved):
    _, tmp = saved
    verify_export(tmp / "ok")


def test_verify_export_names_a_missing_weight_in_one_line(saved):
    model, tmp = saved
    state = {k: v for k, v in model.state_dict().items() if "layers.1.mlp" not in k}
    model.save_pretrained(tmp / "partial", state_dict=state)
    with pytest.raises(RuntimeError, match=r"^export \S+: 3 of \d+ weights missing, e\.g\. model\.layers\.1\.mlp"):
        verify_export(tmp / "partial")


def test_verify_export_names_a_wrong_shape(saved):
    model, tmp = saved
    state = dict(model.state_dict())
    state["model.norm.weight"] = torch.ones(8)
    model.save_pretrained(tmp / "wrong", state_dict=state)
    with pytest.raises(RuntimeError, match=r"model\.norm\.weight has shape \(8,\), the model class expects \(16,\)"):
        verify_export(tmp / "wrong")


# ------------------------------------------------------------------ 1 vs 2 processes (DDP over gloo)


def launch(n_processes: int, base_dir: Path, out: Path) -> dict:
    """tests/dist/processes.py under torchrun (the launcher `accelerate launch` uses on GPUs), on CPU."""
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", str(n_processes),
           str(REPO / "tests" / "dist" / "processes.py"), str(base_dir), str(out)]
    proc = subprocess.run(cmd, env={**venv_env(), "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return {**json.loads((out / "result.json").read_text()), "out": out, "log": proc.stdout + proc.stderr}


@pytest.fixture(scope="module")
def by_processes(base_dir, tmp_path_factory):
    return {n: launch(n, base_dir, tmp_path_factory.mktemp(f"p{n}")) for n in (1, 2)}


@pytest.mark.parametrize("method", ["sft", "gift", "psft"])
def test_one_and_two_processes_train_the_same_sft_run(by_processes, method):
    """Same global batch (2 per process x accumulation): the same loss at every optimiser step and the same
    validation CE after every epoch. The token mean over all processes and micro-batches is what makes it so."""
    one, two = by_processes[1], by_processes[2]
    assert (one["processes"], two["processes"]) == (1, 2)
    a, b = one["sft"][method], two["sft"][method]
    assert a["steps"] == b["steps"] and len(a["step_losses"]) == a["steps"]
    for (step_a, loss_a), (step_b, loss_b) in zip(a["step_losses"], b["step_losses"]):
        assert step_a == step_b and loss_b == pytest.approx(loss_a, rel=1e-5, abs=1e-6), method
    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
    # the global batch each run trained with, as its metrics record it (per process x accumulation x processes)
    assert (a["metrics_processes"], b["metrics_processes"]) == (1, 2) and a["global_batch"] == b["global_batch"] == 8
    # epochs.json's diagnostics (GIFT's mass on y*, PSFT's clip fraction, ...) pool every process's tokens
    assert [sorted(d) for d in b["diagnostics"]] == [sorted(d) for d in a["diagnostics"]]
    for da, db in zip(a["diagnostics"], b["diagnostics"]):
        assert db == pytest.approx(da, rel=1e-4, abs=1e-6), method


def test_grpo_runs_its_steps_on_two_processes(by_processes):
    grpo = by_processes[2]["grpo"]
    assert grpo["steps"] == 2 and grpo["logged_steps"] == [1, 2]
    assert "model.safetensors" in grpo["export"]


@pytest.mark.parametrize("n", [1, 2])
def test_grpo_grading_counts_are_the_whole_runs_on_every_process(by_processes, n):
    """2 generation batches of 4 prompts x G = 2 are 16 reward gradings, 8 on each of 2 processes. Each process's
    pool counts only its own, so metrics.json (written by whichever process renames last) and the checkpoint's
    grading_stats.json (process 0's) used to record 8: at the paper's 8 GPUs, one eighth of the run."""
    out = by_processes[n]["out"]
    for rank in range(n):
        recorded = json.loads((out / f"grpo-grading-rank{rank}.json").read_text())
        assert recorded["metrics"]["graded"] == recorded["checkpoint"]["graded"] == 16, (rank, recorded)


@pytest.mark.parametrize("n", [1, 2])
def test_grpo_step_log_counts_the_whole_batchs_grading_errors(by_processes, n):
    """Every grading reports an error here (tests/dist/processes.py): each step's grading/errors is its generation
    batch's 4 prompts x G = 2 = 8 completions. TRL averages a reward function's log_metric over the processes, so
    on 2 processes the step log recorded 4, each process's own count (at the paper's 8 GPUs an eighth)."""
    assert by_processes[n]["grpo"]["grading_errors"] == [8.0, 8.0]


@pytest.mark.parametrize("n", [1, 2])
def test_a_job_logs_each_phase_once_whatever_its_processes(by_processes, n):
    """The job log's phase lines (benchmarks/profile_run.py sums them per rule): one per phase of the job, with the
    job's tokens and FLOPs. Every process printed its own, so a 2-process job's log held each phase twice: twice
    the job's seconds, tokens and FLOPs in the profile, and 'start + imports + other' below zero."""
    from giftlab.profiling import read_phases

    phases = read_phases(by_processes[n]["log"])
    names = [p["phase"] for p in phases]
    assert names.count("sft/train") == 3 and names.count("grpo/train") == 3 and names.count("grpo/export") == 3
    one = [p["tokens"] for p in read_phases(by_processes[1]["log"]) if p["phase"] == "sft/train"]
    assert [p["tokens"] for p in phases if p["phase"] == "sft/train"] == one


@pytest.mark.parametrize("n", [1, 2])
def test_unified_paradigms_train_on_one_and_two_processes(by_processes, n):
    luffy, relift = by_processes[n]["luffy"], by_processes[n]["relift"]
    assert luffy["steps"] == relift["steps"] == 2
    assert luffy["demonstrations"] == relift["demonstrations"] == {"max_tokens": 32, "kept": 8, "dropped": 0,
                                                                   "max_steps": 2}
    # G = 2 and one expert per group: half of every generation batch is demonstrations, on every process
    assert [row["luffy/expert_fraction"] for row in luffy["log"] if "luffy/expert_fraction" in row] == [0.5, 0.5]
    # a random model fails every question: two hard questions per batch fill a buffer of 2, one SFT step per batch
    sft_steps = [row["relift/sft_steps"] for row in relift["log"] if "relift/sft_steps" in row]
    assert sft_steps == [1.0, 2.0]


# ------------------------------------------------------------------ GRPO's KL reference (grpo.kl_coef > 0)


def test_grpos_kl_reference_holds_its_weights_in_every_process_of_an_fsdp_launch(base_dir, tmp_path):
    """TRL loads GRPO's reference itself after the process group exists and shards it without a broadcast: under
    FSDP's CPU-RAM-efficient loading the GPU set's transformers 5.17 left it all zeros on rank 1 (a KL term against
    a uniform model; .ci/run's third stage runs this with 5.17, where the plain trainer shows it). Built inside
    trl_reference_in_every_process, every process holds the checkpoint's reference."""
    from giftlab.models import load_model

    expected = float(load_model(base_dir)(input_ids=torch.arange(3, 40).unsqueeze(0)).logits.double().abs().sum())
    ranks = two_process_ranks("grpo_reference.py", base_dir, out=tmp_path)
    # TRL's fused lm head (trl.trainer.utils.add_fused_lm_head) computes the reference's logits ~5e-5 off a plain
    # forward's; a model of zeros sums to 0
    assert [r["whole"] for r in ranks] == pytest.approx([expected, expected], rel=1e-3)
    assert ranks[1]["whole"] == ranks[0]["whole"]
    assert ranks[0]["plain"] == pytest.approx(expected, rel=1e-3)  # rank 0 reads the weights in any case
    assert all(r["env_after"] == "true" for r in ranks)  # the launch's setting is back for what loads later


def test_train_grpo_builds_its_trainer_with_the_reference_loaded_whole(base_dir, tmp_path, monkeypatch):
    """train_grpo's trainer goes through trl_reference_in_every_process: with grpo.kl_coef > 0 TRL's reference load
    runs inside weights_in_every_process, and TRL's loader is its own again afterwards."""
    import contextlib

    import trl.trainer.grpo_trainer as trl_grpo

    import giftlab.models
    from giftlab.models import load_model, load_tokenizer
    from giftlab.training.grpo import train_grpo

    entered = []

    @contextlib.contextmanager
    def recording():
        entered.append(True)
        yield

    monkeypatch.setattr(giftlab.models, "weights_in_every_process", recording)
    trl_loader = trl_grpo.create_model_from_path
    cfg = dict(max_steps=1, lr=1e-3, lr_scheduler="constant", num_generations=2, prompts_per_generation=2,
               prompts_per_update=2, temperature=1.0, max_completion_length=4, save_steps=5, grading_timeout=10,
               kl_coef=0.05)
    rows = [{"question": f"Start with {i}. Add 1. What is the result?", "final_answer": str(i + 1)} for i in range(4)]
    train_grpo(init_path=str(base_dir), load_model=load_model, tokenizer=load_tokenizer(base_dir), rl_rows=rows,
               cfg=cfg, seed=0, out_dir=tmp_path / "model", work_dir=tmp_path / "work",
               job_config={"grpo": cfg, "seed": 0})
    assert entered == [True]
    assert trl_grpo.create_model_from_path is trl_loader


def test_a_trl_that_loads_its_reference_otherwise_is_refused_in_one_line(monkeypatch):
    """trl_reference_in_every_process wraps TRL's create_model_from_path: a TRL without it would leave the reference
    unguarded (zeros off rank 0 under 5.17), so a run with grpo.kl_coef > 0 stops before its trainer is built."""
    import trl.trainer.grpo_trainer as trl_grpo

    from giftlab.cli import JobFailed
    from giftlab.training.sharded import trl_reference_in_every_process

    monkeypatch.delattr(trl_grpo, "create_model_from_path")
    with trl_reference_in_every_process(False):  # no reference (kl_coef 0): nothing to guard
        pass
    with pytest.raises(JobFailed, match=r"^trl [\d.]+: GRPOTrainer no longer loads its reference through "
                                        r"create_model_from_path; .* grpo\.kl_coef > 0$"):
        with trl_reference_in_every_process(True):
            pass
