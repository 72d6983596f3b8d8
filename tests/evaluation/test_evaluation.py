"""Evaluation: pass@k, bootstrap CI, HF generation determinism, runner summary, loaders, CLI."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from giftlab.evaluation import benchmarks as bm
from giftlab.evaluation import job as evaluation_job
from giftlab.evaluation.generation import Sample, render_prompt, sample_seed
from giftlab.stats import bootstrap_ci, pass_at_1_ci, pass_at_k, pass_at_k_single
from giftlab.evaluation.runner import evaluate

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- fake grader


@dataclass
class FakeGrade:
    correct: bool
    extracted: str | None
    timed_out: bool = False


def last_boxed(text: str) -> str | None:
    found = re.findall(r"\\boxed\{([^{}]*)\}", text)
    return found[-1] if found else None


def fake_grade(responses, golds):
    out = []
    for r, g in zip(responses, golds):
        ex = last_boxed(r)
        out.append(FakeGrade(correct=ex is not None and ex == g, extracted=ex,
                             timed_out="TIMEOUT" in r))
    return out


# --------------------------------------------------------------------------- pass@k


def enumerated_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of k-subsets of n samples (first c correct) containing a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_closed_form_and_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                closed = 1 - math.comb(n - c, k) / math.comb(n, k)
                got = pass_at_k_single(n, c, k)
                assert got == pytest.approx(closed, abs=1e-12), (n, c, k)
                assert got == pytest.approx(enumerated_pass_at_k(n, c, k), abs=1e-12), (n, c, k)
    assert pass_at_k_single(5, 2, 1) == pytest.approx(0.4)  # pass@1 == c/n
    assert pass_at_k_single(200, 3, 100) == pytest.approx(
        1 - math.comb(197, 100) / math.comb(200, 100), rel=1e-12)  # large n, no overflow


def test_pass_at_k_single_rejects_bad_args():
    with pytest.raises(ValueError):
        pass_at_k_single(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k_single(4, 1, 5)


def test_pass_at_k_matrix_and_counts_agree_and_skip_large_k():
    matrix = [[True, False, False, False], [True, True, False, True], [False] * 4]
    by_counts = pass_at_k([(4, 1), (4, 3), (4, 0)], ks=(1, 2, 4, 8))
    by_matrix = pass_at_k(matrix, ks=(1, 2, 4, 8))
    assert by_counts == pytest.approx(by_matrix)
    assert set(by_matrix) == {"pass@1", "pass@2", "pass@4"}
    assert by_matrix["pass@1"] == pytest.approx((1 / 4 + 3 / 4 + 0) / 3)
    assert by_matrix["pass@4"] == pytest.approx(2 / 3)
    assert pass_at_k(np.array(matrix), ks=(2,)) == pytest.approx({"pass@2": by_matrix["pass@2"]})
    with pytest.raises(ValueError):
        pass_at_k([], ks=(1,))


def test_bootstrap_ci_contains_point_and_is_seeded():
    rng = np.random.default_rng(1)
    matrix = rng.random((60, 8)) < rng.random((60, 1))
    point = pass_at_k(matrix, ks=(1,))["pass@1"]
    lo, hi = pass_at_1_ci(matrix, n_resamples=1000, seed=3)
    assert lo < point < hi
    assert 0.0 <= lo and hi <= 1.0
    assert pass_at_1_ci(matrix, n_resamples=1000, seed=3) == (lo, hi)
    assert pass_at_1_ci(matrix, n_resamples=1000, seed=4) != (lo, hi)
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)


# --------------------------------------------------------------------------- HF generation


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from giftlab.evaluation.toy import build_toy_model_dir

    return build_toy_model_dir(tmp_path_factory.mktemp("toy") / "model")


@pytest.fixture(scope="module")
def gen(toy_dir):
    from giftlab.evaluation.generation import HFGenerator

    return HFGenerator(toy_dir, batch_size=16)


PROMPTS = ["Start with 7. Add 5.\n", "Hi\n", "What is the result of 3*4 and 2?\n"]
KW = dict(temperature=1.0, top_p=1.0, max_new_tokens=24)


def texts(out):
    return [[s.text for s in per] for per in out]


def test_tokenizer_round_trips_whitespace(toy_dir, gen):
    tok = gen.tokenizer
    text = "Start with 7.\nAdd 5 ."
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text
    assert tok.padding_side == "left"


def test_same_seed_same_text_different_seed_differs(gen):
    a = gen.generate(PROMPTS, n=3, seed=0, **KW)
    b = gen.generate(PROMPTS, n=3, seed=0, **KW)
    c = gen.generate(PROMPTS, n=3, seed=1, **KW)
    assert a == b
    assert texts(a) != texts(c)
    assert [len(per) for per in a] == [3, 3, 3]
    # the n samples of a prompt have distinct recorded seeds and (very likely) distinct texts
    for prompt, per in zip(PROMPTS, a):
        assert [s.seed for s in per] == [sample_seed(0, prompt, i) for i in range(3)]
        assert len({s.text for s in per}) == 3


def test_results_do_not_depend_on_batch_composition(gen, toy_dir):
    from giftlab.evaluation.generation import HFGenerator

    together = gen.generate(PROMPTS, n=4, seed=5, **KW)
    alone = [gen.generate([p], n=4, seed=5, **KW)[0] for p in PROMPTS]
    assert together == alone
    one_row = HFGenerator(toy_dir, batch_size=1)
    reordered = one_row.generate(PROMPTS[::-1], n=4, seed=5, **KW)[::-1]
    assert reordered == together


@pytest.mark.parametrize("temperature,n", [(1.0, 4), (0.0, 3)])
def test_shared_prompts_and_dropped_rows_generate_what_transformers_generate_does(gen, temperature, n):
    """HFGenerator runs each distinct prompt once and drops stopped rows; transformers' generate, over the same
    padded rows with the same processor (benchmarks/generation_paths.py), is the reference: the same texts."""
    import importlib.util

    from helpers import REPO

    spec = importlib.util.spec_from_file_location("generation_paths", REPO / "benchmarks" / "generation_paths.py")
    paths = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paths)
    prompts = PROMPTS * 2
    kw = dict(n=n, seed=7, temperature=temperature, top_p=0.9, max_new_tokens=24)
    ours = gen.generate(prompts, **kw)
    assert [[s.text for s in per] for per in ours] == paths.reference_generate(gen, prompts, **kw)
    lengths = {s.num_tokens for per in ours for s in per}
    if temperature:  # rows stopped at different steps: some left the batch while others went on
        assert len(lengths) > 1


def test_stop_and_length_bookkeeping(gen):
    out = gen.generate(PROMPTS * 4, n=4, seed=0, temperature=1.0, top_p=1.0, max_new_tokens=24)
    flat = [s for per in out for s in per]
    reasons = {s.finish_reason for s in flat}
    assert reasons <= {"stop", "length"}
    for s in flat:
        assert "<eos>" not in s.text and "<pad>" not in s.text
        if s.finish_reason == "length":
            assert s.num_tokens == 24
        else:
            assert s.num_tokens <= 24
    assert "stop" in reasons  # a random 85-token model emits <eos> within 24 tokens fairly often


def test_stops_on_eos_and_extra_stop_ids(toy_dir, gen):
    from giftlab.evaluation.generation import HFGenerator

    greedy = gen.generate(PROMPTS[:1], n=2, seed=0, temperature=0.0, top_p=1.0, max_new_tokens=8)
    first = greedy[0][0]
    assert greedy[0][0].text == greedy[0][1].text  # greedy: copies are identical
    assert greedy[0][0].seed != greedy[0][1].seed  # but each records its own seed
    assert gen.tokenizer.eos_token_id in gen.stop_ids
    # make the first greedy token a stop token: generation ends immediately
    first_id = gen.tokenizer(first.text, add_special_tokens=False).input_ids[0]
    stopper = HFGenerator(toy_dir, batch_size=4, stop_token_ids=[first_id])
    out = stopper.generate(PROMPTS[:1], n=1, seed=0, temperature=0.0, top_p=1.0,
                           max_new_tokens=8)[0][0]
    assert out.finish_reason == "stop" and out.num_tokens == 1
    assert out.text == gen.tokenizer.decode([first_id], skip_special_tokens=True)


def test_checkpoint_generation_config_does_not_leak(toy_dir, gen, tmp_path):
    import shutil

    from giftlab.evaluation.generation import HFGenerator

    other = tmp_path / "model"
    shutil.copytree(toy_dir, other)
    cfg = json.loads((other / "generation_config.json").read_text())
    cfg.update(do_sample=True, temperature=0.01, top_k=1, repetition_penalty=5.0,
               no_repeat_ngram_size=2, min_new_tokens=20)
    (other / "generation_config.json").write_text(json.dumps(cfg))
    leaky = HFGenerator(other, batch_size=16)
    assert leaky.generate(PROMPTS, n=2, seed=0, **KW) == gen.generate(PROMPTS, n=2, seed=0, **KW)


def test_ignore_eos_runs_to_max_new_tokens(toy_dir):
    from giftlab.evaluation.generation import HFGenerator

    g = HFGenerator(toy_dir, batch_size=32, ignore_eos=True)
    out = g.generate(PROMPTS * 4, n=4, seed=0, **KW)
    assert {(s.finish_reason, s.num_tokens) for per in out for s in per} == {("length", 24)}


def test_per_row_sampler_matches_softmax_and_top_p():
    import torch

    from giftlab.evaluation.generation import _PerRowSampler

    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(4000, 1)
    for temperature, top_p in ((1.0, 1.0), (0.5, 1.0), (1.0, 0.8)):
        out = _PerRowSampler(range(4000), temperature, top_p)(None, scores)
        picks = out.argmax(-1)
        assert torch.isfinite(out).sum() == 4000  # exactly one finite entry per row
        freq = torch.bincount(picks, minlength=4).float() / 4000
        probs = (scores[0] / temperature).softmax(-1)
        if top_p < 1.0:  # nucleus {0, 1}: 0.665 + 0.245 >= 0.8
            probs = torch.tensor([probs[0], probs[1], 0.0, 0.0]) / (probs[0] + probs[1])
        assert torch.allclose(freq, probs, atol=0.03), (temperature, top_p, freq, probs)


def test_counter_uniform_is_uniform_and_keyed():
    import torch

    from giftlab.evaluation.generation import _mul32, counter_uniform

    h = torch.tensor([0, 1, 0xFFFFFFFF, 123456789], dtype=torch.int64)
    for c in (0x85EBCA6B, 0xC2B2AE35, 0x27D4EB2F):
        assert _mul32(h, c).tolist() == [(int(x) * c) % 2**32 for x in h]
    seeds = torch.arange(64)
    u = counter_uniform(seeds, step=0, vocab=1000)
    assert u.shape == (64, 1000) and 0 < u.min() and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005
    assert torch.equal(u, counter_uniform(seeds, 0, 1000))  # pure function
    assert torch.equal(u[5], counter_uniform(seeds[5:6], 0, 1000)[0])  # row independent
    assert not torch.equal(u, counter_uniform(seeds, 1, 1000))  # step changes it
    assert not torch.equal(u[0], u[1])  # seed changes it
    # neighbouring tokens / steps / seeds are uncorrelated
    flat = torch.stack([counter_uniform(seeds, t, 50) for t in range(20)]).flatten()
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()) < 0.03


def test_render_prompt(gen):
    assert render_prompt(gen.tokenizer, "Q?") == "Q?"  # no chat template: raw question
    with pytest.raises(ValueError):
        render_prompt(gen.tokenizer, "Q?", chat_template=True)

    class Tok:
        chat_template = "x"

        def apply_chat_template(self, msgs, tokenize, add_generation_prompt):
            assert not tokenize and add_generation_prompt
            return f"<user>{msgs[0]['content']}<assistant>"

    assert render_prompt(Tok(), "Q?") == "<user>Q?<assistant>"
    assert render_prompt(Tok(), "Q?", chat_template=False) == "Q?"


def test_make_generator_rejects_unknown_backend(toy_dir):
    from giftlab.evaluation.generation import make_generator

    with pytest.raises(ValueError, match="backend"):
        make_generator(toy_dir, backend="nope")


# --------------------------------------------------------------------------- runner


class FakeGenerator:
    """Problem j answers correctly in the first ``correct[j]`` of its n samples."""

    backend = "fake"

    def __init__(self, correct):
        self.correct = correct
        self.calls = 0

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        self.calls += 1
        out = []
        for p in prompts:
            j = int(p.split()[1])
            per = []
            for i in range(n):
                ans = str(j) if i < self.correct[j] else "wrong"
                text = ("TIMEOUT " if ans == "wrong" and i == n - 1 and j == 0 else "") + \
                    f"so \\boxed{{{ans}}}"
                per.append(Sample(text=text, num_tokens=10 + i, finish_reason="stop",
                                  seed=seed + i))
            out.append(per)
        return out


def test_runner_summary_on_fake_generator():
    correct = [0, 2, 4, 1]
    records = [{"id": f"p{j}", "prompt": f"problem {j}", "gold": str(j), "kind": "math"}
               for j in range(4)]
    gen = FakeGenerator(correct)
    samples, summary = evaluate(gen, records, n_samples=4, temperature=0.6, max_new_tokens=32,
                                seed=7, grade_fn=fake_grade, ks=(1, 2, 4, 8), chunk_size=3,
                                progress=False)
    assert gen.calls == 2
    assert len(samples) == 16
    assert summary["n_problems"] == 4 and summary["n_samples"] == 4
    expected = pass_at_k([(4, c) for c in correct], ks=(1, 2, 4))
    for k in (1, 2, 4):
        assert summary[f"pass@{k}"] == pytest.approx(expected[f"pass@{k}"])
    assert "pass@8" not in summary
    assert summary["pass@1"] == pytest.approx(7 / 16)
    lo, hi = summary["pass@1_ci95"]
    assert lo <= summary["pass@1"] <= hi
    assert summary["mean_response_tokens"] == pytest.approx(11.5)
    assert summary["timeouts"] == 1
    assert summary["no_answer"] == 0
    row = samples[5]
    assert row == {**row, "prompt_id": "p1", "sample_index": 1, "seed": 8, "extracted": "1",
                   "correct": True, "num_tokens": 11}
    assert set(row) >= {"prompt_id", "sample_index", "seed", "text", "extracted", "correct",
                        "seconds"}
    # chunking does not change anything but timing
    samples2, summary2 = evaluate(FakeGenerator(correct), records, n_samples=4, temperature=0.6,
                                  max_new_tokens=32, seed=7, grade_fn=fake_grade, chunk_size=64,
                                  progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(samples2) == strip(samples)
    assert summary2["pass@1_ci95"] == summary["pass@1_ci95"]


def test_each_generator_gets_the_prompts_per_call_it_asks_for():
    """Without ``chunk_size`` the generator decides: vLLM (``prompts_per_call = None``) gets every prompt in one
    call, so its scheduler batches them all instead of each chunk of 64 waiting for its longest sample."""
    from giftlab.evaluation.generation import HFGenerator, VLLMGenerator

    records = [{"id": f"p{j}", "prompt": f"problem {j % 4}", "gold": str(j % 4), "kind": "math"} for j in range(130)]
    calls = {}
    for per_call in (None, 64, 50):
        gen = FakeGenerator([1, 2, 3, 4])
        gen.prompts_per_call = per_call
        sizes = []
        original = gen.generate
        gen.generate = lambda prompts, _o=original, _s=sizes, **kw: (_s.append(len(prompts)), _o(prompts, **kw))[1]
        evaluate(gen, records, n_samples=2, temperature=0.6, max_new_tokens=8, seed=1, grade_fn=fake_grade,
                 progress=False)
        calls[per_call] = sizes
    assert calls == {None: [130], 64: [64, 64, 2], 50: [50, 50, 30]}
    assert VLLMGenerator.prompts_per_call is None and HFGenerator.prompts_per_call == 64
    bare = FakeGenerator([1, 2, 3, 4])  # no prompts_per_call: 64
    bare.generate = lambda prompts, _o=bare.generate, **kw: (calls.setdefault("bare", []).append(len(prompts)),
                                                             _o(prompts, **kw))[1]
    evaluate(bare, records, n_samples=2, temperature=0.6, max_new_tokens=8, seed=1, grade_fn=fake_grade,
             progress=False)
    assert calls["bare"] == [64, 64, 2]


def test_a_generation_log_splits_vllms_single_call_and_keeps_what_it_can_trust(tmp_path):
    """With a log, a generator that takes every prompt at once (vLLM) gets ``save_every`` at a time, so a kill
    loses one chunk, not the benchmark; the log gives back only the problems of its own stamp and prompts."""
    from giftlab.evaluation.resume import GenerationLog

    records = [{"id": f"p{j}", "prompt": f"problem {j % 4}", "gold": str(j % 4), "kind": "math"} for j in range(7)]
    records[5]["prompt"] = "problem 1 again"
    sizes = []

    def run(log, save_every=3):
        gen = FakeGenerator([1, 2, 3, 4, 2])
        gen.prompts_per_call, original = None, gen.generate
        gen.generate = lambda prompts, **kw: (sizes.append(len(prompts)), original(prompts, **kw))[1]
        sizes.clear()
        return evaluate(gen, records, n_samples=2, temperature=0.6, max_new_tokens=8, seed=1, grade_fn=fake_grade,
                        progress=False, log=log, save_every=save_every)

    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    whole, _ = run(None)
    assert sizes == [7]  # no log: one call, as before
    path = tmp_path / "tiny_id.generated.jsonl"
    samples, summary = run(GenerationLog(path, {"settings": 1}))
    assert sizes == [3, 3, 1] and strip(samples) == strip(whole) and summary["resumed_problems"] == 0
    assert len(path.read_text().splitlines()) == 1 + 7
    assert run(GenerationLog(path, {"settings": 1}))[1]["resumed_problems"] == 7 and sizes == []
    # another stamp: nothing kept; another prompt at problem 5 (a changed file under the same stamp): kept up to it
    assert run(GenerationLog(path, {"settings": 2}))[1]["resumed_problems"] == 0 and sizes == [3, 3, 1]
    records[5]["prompt"] = "problem 1 changed"
    samples, summary = run(GenerationLog(path, {"settings": 2}))
    assert summary["resumed_problems"] == 5 and sizes == [2]
    assert json.loads(path.read_text().splitlines()[6])["samples"][0][0] == samples[10]["text"]


def test_a_generation_log_survives_a_changed_runtime_key(tmp_path):
    """eval.save_every_prompts (and the grading processes) are runtime keys, "never change a result": lowering
    save_every_prompts after a preemption threw away the samples kept so far, and the finished benchmarks too."""
    from giftlab.evaluation.resume import FinishedBenchmarks

    records = [{"id": f"p{j}", "prompt": f"problem {j}", "gold": str(j), "kind": "math"} for j in range(4)]
    settings = {"seed": 1, "n_samples": 2, "benchmark": "tiny_id", "save_every_prompts": 4, "grading_workers": 2}
    finished = FinishedBenchmarks(tmp_path / "work", tmp_path / "model")
    evaluate(FakeGenerator([1, 2, 1, 0]), records, n_samples=2, temperature=0.6, max_new_tokens=8, seed=1,
             grade_fn=fake_grade, progress=False, log=finished.generation_log("tiny_id", settings, None))
    changed = {**settings, "save_every_prompts": 2, "grading_workers": 8}
    _, summary = evaluate(FakeGenerator([1, 2, 1, 0]), records, n_samples=2, temperature=0.6, max_new_tokens=8,
                          seed=1, grade_fn=fake_grade, progress=False,
                          log=finished.generation_log("tiny_id", changed, None))
    assert summary["resumed_problems"] == 4


def test_a_benchmark_killed_while_kept_loses_neither_its_files_nor_its_log(tmp_path, monkeypatch):
    """keep() deleted the benchmark's generation log before copying its files and writing their stamp: a kill
    while copying MMLU-Pro's GB of samples left neither, and the retry generated the whole benchmark again."""
    from giftlab.evaluation import resume
    from giftlab.evaluation.resume import FinishedBenchmarks

    records = [{"id": f"p{j}", "prompt": f"problem {j}", "gold": str(j), "kind": "math"} for j in range(3)]
    settings = {"seed": 1, "n_samples": 1, "benchmark": "tiny_id"}
    finished = FinishedBenchmarks(tmp_path / "work", tmp_path / "model")
    samples, summary = tmp_path / "out" / "s.jsonl", tmp_path / "out" / "s.json"
    samples.parent.mkdir()
    samples.write_text("rows\n")
    summary.write_text("{}")
    evaluate(FakeGenerator([1, 1, 1]), records, n_samples=1, temperature=0.6, max_new_tokens=8, seed=1,
             grade_fn=fake_grade, progress=False, log=finished.generation_log("tiny_id", settings, None))

    def killed(*args):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(resume.shutil, "copyfile", killed)
    with pytest.raises(KeyboardInterrupt):
        finished.keep("tiny_id", settings, None, samples, summary)
    monkeypatch.undo()
    _, again = evaluate(FakeGenerator([1, 1, 1]), records, n_samples=1, temperature=0.6, max_new_tokens=8, seed=1,
                        grade_fn=fake_grade, progress=False, log=finished.generation_log("tiny_id", settings, None))
    assert again["resumed_problems"] == 3


def test_timed_out_grade_counts_as_wrong():
    records = [{"id": "a", "prompt": "problem 0", "gold": "0", "kind": "math"}]

    def grade(responses, golds):
        return [FakeGrade(correct=True, extracted="0", timed_out=True) for _ in responses]

    _, summary = evaluate(FakeGenerator([1]), records, n_samples=2, temperature=1.0,
                          max_new_tokens=8, seed=0, grade_fn=grade, progress=False)
    assert summary["pass@1"] == 0.0 and summary["timeouts"] == 2


# --------------------------------------------------------------------------- loaders


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"id": 1, "prompt": "Start with 3. Add 4. What is the result?\n", "gold": 7, "kind": "math"}


def test_loader_reads_records(tmp_path):
    f = write_jsonl(tmp_path / "tiny_id.jsonl", [GOOD, {**GOOD, "id": 2, "prompt": "Start with 5. What is it?"}])
    recs = bm.load_benchmark("tiny_id", path=f)
    assert [r["id"] for r in recs] == ["1", "2"] and recs[0]["gold"] == "7"
    zero = write_jsonl(tmp_path / "zero.jsonl", [{**GOOD, "gold": 0}])
    assert bm.load_benchmark("tiny_id", path=zero)[0]["gold"] == "0"  # a falsy gold is a gold
    assert len(bm.load_benchmark("tiny_id", path=f, limit=1)) == 1


@pytest.mark.parametrize("rows, message", [
    ([GOOD, {"id": 2, "prompt": "x", "kind": "math"}], r"row 2: missing key\(s\) gold"),
    ([GOOD, GOOD], "row 2: duplicate id '1'"),
    ([GOOD, "{not json"], "row 2: not valid JSON"),
    ([{**GOOD, "kind": "code"}], "row 1: kind 'code' not supported"),
    (["[1, 2]"], "expected a JSON list of objects"),
    ([GOOD, {**GOOD, "id": 2, "gold": None}], "row 2: gold is null"),  # else graded against "None"
    ([{**GOOD, "id": None, "prompt": None}], "row 1: id, prompt is null"),
])
def test_loader_errors_name_file_and_row(tmp_path, rows, message):
    f = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=message) as exc:
        bm.load_jsonl_records(f)
    assert str(f) in str(exc.value) and "\n" not in str(exc.value)


MC = {"id": "m1", "prompt": "Start with 3. Add 4. What is the result?\n(A) 6 (B) 7", "gold": "B",
      "kind": "multiple_choice", "choices": ["6", "7"]}


def test_tiny_mc_loader_checks_choices_and_letter(tmp_path):
    recs = bm.load_benchmark("tiny_mc", path=write_jsonl(tmp_path / "tiny_mc.jsonl", [MC]))
    assert recs[0]["gold"] == "B" and recs[0]["choices"] == ["6", "7"]
    for bad, message in (({**MC, "gold": "C"}, "row 1: gold 'C' is not one of the letters A..B"),
                         ({**MC, "choices": ["6"]}, "row 1: 'choices' must be a list"),
                         ({k: v for k, v in MC.items() if k != "choices"}, "row 1: 'choices' must be"),
                         (GOOD, "row 1: kind 'math' not supported")):
        with pytest.raises(ValueError, match=message):
            bm.load_benchmark("tiny_mc", path=write_jsonl(tmp_path / "bad_mc.jsonl", [bad]))
    with pytest.raises(ValueError, match="kind 'multiple_choice' not supported"):
        bm.load_benchmark("tiny_family", path=write_jsonl(tmp_path / "f.jsonl", [MC]))


def test_loader_missing_file_and_unknown_benchmark(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        bm.load_benchmark("tiny_id", path=tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="unknown benchmark 'gsm9k'"):
        bm.load_benchmark("gsm9k", path=tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="^tiny_id: read from a local file only"):
        bm.load_benchmark("tiny_id")


# --------------------------------------------------------------------------- CLI


def test_a_retried_evaluation_job_keeps_the_benchmarks_an_earlier_try_finished(tmp_path, toy_dir, monkeypatch):
    """A job killed after its first benchmark (Snakemake then removes its outputs): the retry copies the finished
    benchmark back from work/evaluate/<out-dir> and evaluates only the other; the outputs equal an uninterrupted
    run's. Other settings or a retrained model (new weight files) evaluate it again; a finished job leaves nothing."""
    script = script_grading_in_process(monkeypatch, tmp_path)
    model = tmp_path / "model"
    shutil.copytree(toy_dir, model)
    bench = {name: write_jsonl(tmp_path / f"{name}.jsonl", [GOOD, {**GOOD, "id": 2, "prompt": "Start with 5.",
                                                                     "gold": 5}]) for name in ("tiny_id", "tiny_ood")}
    settings = {"n_samples": 2, "temperature": 1.0, "max_new_tokens": 6, "backend": "hf", "grading_timeout": 4,
                "ks": [1, 2]}
    config = {"seed": 3, "benchmarks": {"tiny_id": settings, "tiny_ood": settings}}

    def run(out, cfg=config):
        script.main(["--config", json.dumps(cfg), "--model", str(model), *sum(
            (["--benchmark-file", f"{n}={f}"] for n, f in bench.items()), []), "--out-dir", str(out)])

    def outputs(out):
        strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
        return {n: (strip([json.loads(x) for x in (out / f"{n}.samples.jsonl").read_text().splitlines()]),
                    {k: v for k, v in json.loads((out / f"{n}.summary.json").read_text()).items()
                     if k not in ("provenance", "generation_seconds", "grading_seconds")}) for n in bench}

    run(tmp_path / "results" / "whole")
    expected = outputs(tmp_path / "results" / "whole")
    assert not (tmp_path / "work" / "evaluate" / "results" / "whole").exists()  # a finished job keeps nothing

    evaluated = []
    real = script.evaluate_benchmark

    def killed_at_the_second(cfg, *a, **kw):
        evaluated.append(cfg["benchmark"])
        if cfg["benchmark"] == "tiny_ood":
            raise KeyboardInterrupt("killed")
        return real(cfg, *a, **kw)

    out = tmp_path / "results" / "eval"
    monkeypatch.setattr(script, "evaluate_benchmark", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        run(out)
    shutil.rmtree(out)  # Snakemake removes a failed job's outputs ...
    kept = tmp_path / "work" / "evaluate" / "results" / "eval"
    assert sorted(p.name for p in kept.iterdir()) == ["tiny_id.samples.jsonl", "tiny_id.stamp.json",
                                                     "tiny_id.summary.json"]
    # ... but not the temporaries a SIGKILL leaves while it writes them (a GB of samples at paper scale)
    out.mkdir(parents=True)
    stale = [out / ".tiny_ood.samples.jsonl.k2j4_9xq.tmp", out / ".tiny_id.summary.json.b_56hxta.tmp"]
    other = out / ".notes.txt.b_56hxta.tmp"
    for path in (*stale, other):
        path.write_text("torn")

    evaluated.clear()
    monkeypatch.setattr(script, "evaluate_benchmark", lambda cfg, *a, **kw: (evaluated.append(cfg["benchmark"]),
                                                                      real(cfg, *a, **kw))[1])
    run(out)
    assert evaluated == ["tiny_ood"] and outputs(out) == expected and not kept.exists()
    assert not any(path.exists() for path in stale) and other.exists()
    other.unlink()

    # what made a kept benchmark must be this job's: other settings, a retrained model or its generation config
    # edited (EOS ids: other samples), evaluate it again
    assert (model / "generation_config.json").is_file()
    for change in ("settings", "model", "generation_config"):
        monkeypatch.setattr(script, "evaluate_benchmark", killed_at_the_second)
        with pytest.raises(KeyboardInterrupt):
            run(out)
        cfg = config
        if change == "settings":
            cfg = {**config, "benchmarks": {**config["benchmarks"], "tiny_id": {**settings, "max_new_tokens": 5}}}
        elif change == "model":
            weights = next(model.glob("*.safetensors"))
            weights.write_bytes(weights.read_bytes())  # the same bytes, a new file: retrained or pulled
        else:
            edited = model / "generation_config.json"
            edited.write_text(edited.read_text() + "\n")
        evaluated.clear()
        monkeypatch.setattr(script, "evaluate_benchmark", lambda cfg, *a, **kw: (evaluated.append(cfg["benchmark"]),
                                                                          real(cfg, *a, **kw))[1])
        run(out, cfg)
        assert evaluated == ["tiny_id", "tiny_ood"], change


def test_a_benchmark_killed_mid_generation_resumes_after_its_last_saved_chunk(tmp_path, toy_dir, monkeypatch):
    """MMLU-Pro is 48k samples, hours of a GPU: a job killed inside it generated all of it again on retry. The
    samples of each chunk of prompts are now kept (resume.GenerationLog) and the retry generates only the problems
    after them; every sample having its own seed, the outputs are an uninterrupted job's."""
    import giftlab.evaluation.generation as generation

    script = script_grading_in_process(monkeypatch, tmp_path)
    model = tmp_path / "model"
    shutil.copytree(toy_dir, model)
    rows = [{**GOOD, "id": i, "prompt": f"Start with {i}. Add 4. What is the result?", "gold": i + 4}
            for i in range(1, 8)]
    bench = write_jsonl(tmp_path / "tiny_id.jsonl", rows)
    config = {"seed": 3, "benchmarks": {"tiny_id": {"n_samples": 2, "temperature": 1.0, "max_new_tokens": 6,
                                                    "backend": "hf", "grading_timeout": 4, "ks": [1, 2]}}}
    calls, kill_at = [], [None]
    make_generator = generation.make_generator

    def two_prompts_per_call(*args, **kwargs):  # the HF backend's chunk is 64 prompts: 2 here, 4 chunks
        generator = make_generator(*args, **kwargs)
        generator.prompts_per_call, generate = 2, generator.generate

        def counted(prompts, **kw):
            calls.append(len(prompts))
            if len(calls) == kill_at[0]:
                raise KeyboardInterrupt("killed")
            return generate(prompts, **kw)

        generator.generate = counted
        return generator

    monkeypatch.setattr(generation, "make_generator", two_prompts_per_call)

    def run(out):
        script.main(["--config", json.dumps(config), "--model", str(model), "--benchmark-file", f"tiny_id={bench}",
                     "--out-dir", str(out)])
        summary = json.loads((out / "tiny_id.summary.json").read_text())
        samples = [{k: v for k, v in json.loads(x).items() if k != "seconds"}
                   for x in (out / "tiny_id.samples.jsonl").read_text().splitlines()]
        return samples, summary

    whole_samples, whole = run(tmp_path / "results" / "whole")
    assert calls == [2, 2, 2, 1] and whole["resumed_problems"] == 0

    calls.clear()
    kill_at[0] = 3  # killed in the third chunk: problems 1-4 kept
    out = tmp_path / "results" / "eval"
    with pytest.raises(KeyboardInterrupt):
        run(out)
    kept = tmp_path / "work" / "evaluate" / "results" / "eval" / "tiny_id.generated.jsonl"
    with kept.open("a") as fh:
        fh.write('{"prompt": "cut short by the ki')  # a kill while a chunk was being written
    calls.clear()
    kill_at[0] = None
    samples, summary = run(out)
    assert calls == [2, 1] and summary["resumed_problems"] == 4 and samples == whole_samples
    drop = ("provenance", "generation_seconds", "grading_seconds", "resumed_problems")
    assert {k: v for k, v in summary.items() if k not in drop} == {k: v for k, v in whole.items() if k not in drop}
    assert not kept.parent.exists()  # a finished job keeps nothing

    # another model (new weight files) or other settings: the kept samples are not its own, generated again
    calls.clear()
    kill_at[0] = 2
    with pytest.raises(KeyboardInterrupt):
        run(out)
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())
    calls.clear()
    kill_at[0] = None
    assert run(out)[1]["resumed_problems"] == 0 and calls == [2, 2, 2, 1]


def test_a_benchmark_kept_as_a_folder_is_evaluated_and_stamped_by_its_contents(tmp_path, toy_dir, monkeypatch):
    """A dataset folder (``hf download ... --local-dir data/benchmarks/math500``, docs/scale.md) is a benchmark file
    too: its summary records a digest of its files (file_sha256 of the folder failed once generation and grading
    were done), and a kept benchmark is restored only while the folder holds what it was made from."""
    from giftlab.evaluation.resume import FinishedBenchmarks

    script = script_grading_in_process(monkeypatch, tmp_path)
    folder = tmp_path / "benchmarks" / "math500"
    folder.mkdir(parents=True)
    (folder / "test.jsonl").write_text("".join(json.dumps({"problem": f"Start with {i}. Add 4.", "answer": str(i + 4),
                                                           "unique_id": f"u{i}"}) + "\n" for i in range(2)))
    config = {"seed": 0, "benchmarks": {"math500": {"n_samples": 2, "temperature": 1.0, "max_new_tokens": 4,
                                                    "backend": "hf", "ks": [1, 2]}}}
    out = tmp_path / "results" / "eval"
    script.main(["--config", json.dumps(config), "--model", str(toy_dir), "--benchmark-file", f"math500={folder}",
                 "--out-dir", str(out)])
    summary = json.loads((out / "math500.summary.json").read_text())
    assert summary["n_problems"] == 2 and len(summary["benchmark_sha256"]) == 16
    # the weights behind the numbers, by content: a table's row traces back to the exact model
    from giftlab.provenance import path_sha256

    assert summary["model_sha256"] == path_sha256(toy_dir)[:16]

    kept = FinishedBenchmarks(tmp_path / "work", toy_dir)
    settings = config["benchmarks"]["math500"]
    kept.keep("math500", settings, folder, out / "math500.samples.jsonl", out / "math500.summary.json")
    assert kept.restore("math500", settings, folder, tmp_path / "s.jsonl", tmp_path / "s.json")
    (folder / "test.jsonl").write_text((folder / "test.jsonl").read_text().replace("Add 4", "Add 5"))
    assert not kept.restore("math500", settings, folder, tmp_path / "s.jsonl", tmp_path / "s.json")


def script_grading_in_process(monkeypatch, workdir):
    """scripts/evaluate.py run from ``workdir``, grading with :func:`fake_grade` in this process (no worker pool)."""
    from contextlib import contextmanager

    script = load_script()

    @contextmanager
    def fake_pool(workers, timeout):
        yield fake_grade

    monkeypatch.setattr(evaluation_job, "grading_pool", fake_pool)
    monkeypatch.chdir(workdir)
    return script


def load_script():
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts/evaluate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_evaluate_script_end_to_end(tmp_path, toy_dir, monkeypatch, capsys):
    from contextlib import contextmanager

    from giftlab.profiling import read_phases

    script = load_script()
    seen = {}

    @contextmanager
    def fake_pool(workers, timeout):
        seen.update(workers=workers, timeout=timeout)
        yield fake_grade

    monkeypatch.setattr(evaluation_job, "grading_pool", fake_pool)
    bench = write_jsonl(tmp_path / "tiny_id.jsonl", [GOOD, {**GOOD, "id": 2, "prompt": "Start with 5.", "gold": 5}])
    config = {"seed": 3, "n_samples": 2, "temperature": 1.0, "max_new_tokens": 6,
              "backend": "hf", "grading_timeout": 4, "benchmark": "tiny_id", "ks": [1, 2]}
    out = tmp_path / "out"
    argv = ["--config", json.dumps(config), "--model", str(toy_dir), "--benchmark-file",
            str(bench), "--samples", str(out / "s.jsonl"), "--summary", str(out / "sum.json")]
    script.main(argv)
    rows = [json.loads(line) for line in (out / "s.jsonl").read_text().splitlines()]
    summary = json.loads((out / "sum.json").read_text())
    assert len(rows) == 4 and seen == {"workers": 2, "timeout": 4.0}
    assert summary["n_problems"] == 2 and summary["backend"] == "hf"
    assert set(k for k in summary if k.startswith("pass@") and "ci" not in k) == {"pass@1",
                                                                                   "pass@2"}
    assert summary["provenance"]["seed"] == 3 and summary["benchmark_sha256"]
    assert summary["benchmark_checks"] == {"rows_read": 2, "rows_filtered": 0, "duplicates_dropped": 0,
                                           "repeats_scored": 0, "problems": 2, "official_size": None,
                                           "size_matches_official": None, "gold_notes": []}
    # the job log's phases (benchmarks/profile_run.py): generation counts each prompt copy's prefill and each token
    phases = {p["phase"]: p for p in read_phases(capsys.readouterr().err)}
    assert set(phases) == {"evaluate/load", "evaluate/generate", "evaluate/grade"}
    generated = sum(r["num_tokens"] for r in rows)
    assert generated < phases["evaluate/generate"]["tokens"] <= generated + 2 * 2 * 64
    assert phases["evaluate/generate"]["flops"] > 0 and phases["evaluate/grade"]["benchmark"] == "tiny_id"
    script.main(argv)  # same config -> same samples (all but the timing)
    again = [json.loads(line) for line in (out / "s.jsonl").read_text().splitlines()]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    assert strip(again) == strip(rows)

    bad = dict(config)
    del bad["max_new_tokens"]
    from giftlab.cli import ConfigError

    with pytest.raises(ConfigError, match="max_new_tokens"):
        script.main(["--config", json.dumps(bad), *argv[2:]])
    with pytest.raises(ConfigError, match=r"ks \[1, 2, 4\]: every k must be in \[1, n_samples = 2\]"):
        script.main(["--config", json.dumps({**config, "ks": [1, 2, 4]}), *argv[2:]])  # no silent pass@4 drop


def test_a_benchmark_with_other_engine_settings_loads_its_model_after_the_last_one_is_released(tmp_path, toy_dir,
                                                                                                monkeypatch):
    """A per_benchmark override of an engine key (batch_size, stop_token_ids, seed_scheme, vllm) needs a model of its
    own; the job kept the first loaded beside it, and a second vLLM engine does not start while the first holds
    gpu_memory_utilization (0.9) of the card (vLLM 0.31.0's request_memory: "Free memory on device ...")."""
    import giftlab.evaluation.generation as generation

    script = script_grading_in_process(monkeypatch, tmp_path)
    make_generator, live, most = generation.make_generator, [], [0]

    def tracked(*args, **kwargs):
        generator = make_generator(*args, **kwargs)
        live.append(generator)
        most[0] = max(most[0], len(live))
        generator.close = lambda: live.remove(generator)
        return generator

    monkeypatch.setattr(generation, "make_generator", tracked)
    rows = [{**GOOD, "id": i, "prompt": f"Start with {i}. Add 4. What is the result?", "gold": i + 4} for i in (1, 2)]
    files = [f"{name}={write_jsonl(tmp_path / f'{name}.jsonl', rows)}" for name in ("tiny_id", "tiny_ood")]
    settings = {"n_samples": 1, "temperature": 1.0, "max_new_tokens": 3, "backend": "hf", "ks": [1]}
    config = {"seed": 0, "benchmarks": {"tiny_id": settings, "tiny_ood": {**settings, "batch_size": 4}}}
    script.main(["--config", json.dumps(config), "--model", str(toy_dir), "--benchmark-file", files[0],
                 "--benchmark-file", files[1], "--out-dir", str(tmp_path / "out")])
    assert most[0] == 1 and len(live) == 1


def test_a_benchmark_of_one_s_own_is_registered_planned_from_benchmark_dir_and_loaded(tmp_path):
    """docs/architecture.md, "Adding a benchmark": register_local + a file in eval.benchmark_dir + eval.benchmarks."""
    from giftlab.config import deep_merge, load_config, validate_config
    from giftlab.plan import Plan
    from helpers import REPO

    bm.register_local("mine", "math", description="ten questions of my own")
    try:
        copies = tmp_path / "copies"
        copies.mkdir()
        write_jsonl(copies / "mine.jsonl", [GOOD, {**GOOD, "id": 2, "prompt": "Start with 5. What is it?"}])
        config = deep_merge(load_config(REPO / "params.yaml"), {"eval": {"benchmark_dir": str(copies)}})
        config["eval"]["benchmarks"] = [*config["eval"]["benchmarks"], "mine"]
        validate_config(config)
        plan = Plan(config)
        assert plan.benchmark_files("all")["mine"] == str(copies / "mine.jsonl")
        records, report = bm.load_benchmark_checked("mine", path=plan.benchmark_files("all")["mine"])
        assert [r["gold"] for r in records] == ["7", "7"] and report["problems"] == 2
        # any format the row reader reads, as the plan finds it
        pd_rows = [GOOD, {**GOOD, "id": 2, "prompt": "Start with 5. What is it?"}]
        (copies / "mine.jsonl").unlink()
        __import__("pandas").DataFrame(pd_rows).to_parquet(copies / "mine.parquet")
        assert Plan(config).benchmark_files("all")["mine"] == str(copies / "mine.parquet")
        assert [r["id"] for r in bm.load_benchmark("mine", path=copies / "mine.parquet")] == ["1", "2"]
        with pytest.raises(ValueError, match=r"^mine: read from a local file only, and none was given"):
            bm.load_benchmark("mine")
        with pytest.raises(ValueError, match="'mine' is already registered"):
            bm.register_local("mine")
    finally:
        bm.BENCHMARKS.pop("mine", None)


def test_a_hand_written_record_under_a_real_benchmark_s_name_says_what_it_lacks(tmp_path):
    f = write_jsonl(tmp_path / "gsm8k.jsonl", [GOOD, {"id": 2, "prompt": "x", "kind": "math"}])
    with pytest.raises(ValueError, match=r"gsm8k.jsonl: row 2: gsm8k \(upstream layout\): a record without gold$"):
        bm.load_benchmark("gsm8k", path=f)
    f = write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "1 + 1?"}])
    with pytest.raises(ValueError, match=r"row 1: gsm8k \(upstream layout\): none of the fields answer present$"):
        bm.load_benchmark("gsm8k", path=f)
