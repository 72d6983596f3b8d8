"""The paired RL-gain table: known differences, intervals, and the 'beyond noise' verdict."""

import pytest

from giftlab.reporting.rl_gain import per_problem_accuracy, rl_gain_table
from giftlab.stats import paired_difference as paired_gain


def rows(accuracies, n=4):
    out = []
    for pid, acc in accuracies.items():
        hits = round(acc * n)
        out += [{"prompt_id": pid, "sample_index": i, "correct": i < hits} for i in range(n)]
    return out


def test_per_problem_accuracy_is_the_mean_over_samples():
    assert per_problem_accuracy(rows({"a": 0.25, "b": 1.0})) == {"a": 0.25, "b": 1.0}


def test_a_uniform_gain_has_a_tight_interval_around_it():
    pre = {f"p{i}": 0.25 for i in range(50)}
    post = {f"p{i}": 0.5 for i in range(50)}
    g = paired_gain(pre, post)
    assert g["gain"] == pytest.approx(0.25) and g["gain_ci95"] == pytest.approx([0.25, 0.25])


def test_no_gain_is_not_beyond_noise_and_a_real_one_is():
    pre = {f"p{i}": (i % 4) / 4 for i in range(40)}
    same = rl_gain_table([("qwen", "sft", "tiny_id", rows(pre), rows(pre))])
    assert same["gain"].iloc[0] == 0 and same["beyond noise"].iloc[0] == "no"
    better = {k: min(1.0, v + 0.25) for k, v in pre.items()}
    up = rl_gain_table([("qwen", "gift-b3", "tiny_id", rows(pre), rows(better))])
    assert up["gain"].iloc[0] > 0 and up["beyond noise"].iloc[0] == "yes"


def test_disjoint_problem_sets_are_an_error():
    with pytest.raises(ValueError, match="share no problem"):
        paired_gain({"a": 0.5}, {"b": 0.5})
