"""``SFTSettings.stop_epoch``: a run read only at ``sft.rl_epoch`` stops there on the same ``epochs``-long LR
schedule, so its checkpoints are the longer run's (giftlab.plan.Plan.sft_stop_epoch: the paper's SFT runs outside
Figure 1); asked later for every epoch it resumes where it stopped, and a work dir of the longer run gives the
shorter one its first epochs."""

import pytest
from safetensors.torch import load_file

from giftlab.config import ConfigError
from giftlab.models import load_model
from giftlab.tinyworld.tokenizer import build_tokenizer
from giftlab.training.sft import SFTSettings, train_sft

ROWS = [{"question": f"Start with {i}. Add {i % 7 + 1}. What is the result?",
         "r1_solution_1": f"{i}+{i % 7 + 1}={i + i % 7 + 1}\n\\boxed{{{i + i % 7 + 1}}}"} for i in range(1, 21)]
JOB = {"run": "dft", "method": "sft"}


def run(base_dir, out, work, stop_epoch=None):
    # a cosine schedule with warm-up: a run that counted its schedule over its own epochs would take other steps
    settings = SFTSettings(epochs=3, batch_size=8, lr=1e-3, max_length=96, seed=0, logging_steps=1,
                           lr_scheduler="cosine", warmup_ratio=0.2, stop_epoch=stop_epoch)
    job = {**JOB, "settings": {"epochs": 3, **({"stop_epoch": stop_epoch} if stop_epoch else {})}}
    return train_sft(base_path=str(base_dir), tokenizer=build_tokenizer(), load_model=load_model,
                     train_rows=ROWS[:16], val_rows=ROWS[16:], solution_key="r1_solution_1", method="sft",
                     objective_params={}, settings=settings, out_dir=out, work_dir=work, job_config=job)


def weights(folder):
    return load_file(folder / "model.safetensors")


def records(metrics):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in metrics["epochs"]]


def same(a, b):
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


@pytest.fixture(scope="module")
def full(base_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    return run(base_dir, root / "out", root / "work"), root


def test_a_run_stopped_at_epoch_2_has_the_full_runs_first_two_epochs(base_dir, tmp_path, full):
    full_metrics, full_root = full
    metrics = run(base_dir, tmp_path / "out", tmp_path / "work", stop_epoch=2)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["epoch_1", "epoch_2"]
    assert records(metrics) == records(full_metrics)[:2] and metrics["steps"] == 4
    for e in (1, 2):
        assert same(weights(tmp_path / "out" / f"epoch_{e}"), weights(full_root / "out" / f"epoch_{e}"))

    # asked for every epoch (it joined Figure 1): resumes at its checkpoint and ends where the full run did
    metrics = run(base_dir, tmp_path / "out3", tmp_path / "work")
    assert metrics["resumed_from"].endswith("checkpoint-4") and records(metrics) == records(full_metrics)
    assert same(weights(tmp_path / "out3" / "epoch_3"), weights(full_root / "out" / "epoch_3"))


def test_a_work_dir_of_the_longer_run_gives_the_shorter_one_its_first_epochs(base_dir, tmp_path, full):
    full_metrics, full_root = full
    metrics = run(base_dir, tmp_path / "out", full_root / "work", stop_epoch=1)
    assert metrics["resumed_from"].endswith("checkpoint-6") and records(metrics) == records(full_metrics)[:1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["epoch_1"] and metrics["steps"] == 2
    assert same(weights(tmp_path / "out" / "epoch_1"), weights(full_root / "out" / "epoch_1"))


def test_a_stop_epoch_outside_the_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="settings.stop_epoch: 4 is not an epoch of 1..3"):
        SFTSettings(epochs=3, batch_size=8, lr=1e-3, max_length=96, stop_epoch=4)
