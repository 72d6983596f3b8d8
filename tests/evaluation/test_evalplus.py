"""HumanEval+ / MBPP+ release files scored like EvalPlus (giftlab.evaluation.evalplus).

The fixture (tests/fixtures/evalplus/, see its README) holds 5 HumanEval+ and 5 MBPP+ rows in the release
schema. Every canonical and wrong solution below is scored by this project's sandboxed runner and, when the
``evalplus`` package is installed, by EvalPlus's own ``untrusted_check``; the verdicts must agree (base and
plus sets), except on HumanEval/32 where EvalPlus 0.3.1 fails every solution (a known bug, see
giftlab.evaluation._evalplus_child). Without the package the verdicts are compared with the ones derived by
reading EvalPlus's code (``EXPECTED``).
"""

from __future__ import annotations

import gzip
import json
import sys
import types
from pathlib import Path

import pytest

from giftlab.evaluation.benchmarks import (HUMANEVAL_TEMPLATE, MBPP_TEMPLATE,
                                           load_benchmark_checked)
from giftlab.evaluation.evalplus import (EvalPlusRunner, is_evalplus_record, release_record,
                                         time_limits)
from giftlab.evaluation.grading import build_program, make_grader

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox targets Linux")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evalplus"
HE_FILE, MBPP_FILE = FIXTURES / "HumanEvalPlus-fixture.jsonl.gz", FIXTURES / "MbppPlus-fixture.jsonl.gz"


def _rows(path):
    with gzip.open(path, "rt") as fh:
        return {r["task_id"]: r for r in map(json.loads, fh)}


HE_ROWS, MBPP_ROWS = _rows(HE_FILE), _rows(MBPP_FILE)

# (task, name, solution, (base passes, plus passes)) -- the expected verdicts read off EvalPlus's code
CASES = [
    ("HumanEval/0", "off_by_one", "def has_close_elements(numbers, threshold):\n"
     "    s = sorted(numbers)\n    return any(b - a <= threshold for a, b in zip(s, s[1:]))\n", (True, False)),
    ("HumanEval/0", "crash_on_empty", "def has_close_elements(numbers, threshold):\n"
     "    s = sorted(numbers)\n    m = s[1] - s[0]\n    for a, b in zip(s, s[1:]):\n        m = min(m, b - a)\n"
     "    return m < threshold\n", (True, False)),
    ("HumanEval/0", "wrong_type", "def has_close_elements(numbers, threshold):\n"
     "    s = sorted(numbers)\n    return str(any(b - a < threshold for a, b in zip(s, s[1:])))\n",
     (False, False)),
    ("HumanEval/0", "prints_but_wrong", "def has_close_elements(numbers, threshold):\n"
     "    print('checking', numbers)\n    return False\n", (False, False)),
    ("HumanEval/2", "within_atol", "def truncate_number(number):\n    return number - int(number) + 1e-7\n",
     (True, True)),
    ("HumanEval/2", "beyond_atol", "def truncate_number(number):\n    return number - int(number) + 1e-5\n",
     (False, False)),
    ("HumanEval/2", "string_result", "def truncate_number(number):\n    return str(number - int(number))\n",
     (False, False)),
    ("HumanEval/12", "last_longest", "def longest(strings):\n    if not strings:\n        return None\n"
     "    best = strings[0]\n    for s in strings:\n        if len(s) >= len(best):\n            best = s\n"
     "    return best\n", (False, False)),
    ("HumanEval/12", "other_correct", "def longest(strings):\n"
     "    return max(strings, key=len) if strings else None\n", (True, True)),
    ("HumanEval/32", "constant", "def find_zero(xs):\n    return 0.0\n", (False, False)),
    ("HumanEval/32", "infinite_loop", "def find_zero(xs):\n    while True:\n        pass\n", (False, False)),
    ("Mbpp/2", "list_any_order", "def similar_elements(a, b):\n    return sorted(set(a) & set(b), key=str)\n",
     (True, True)),
    ("Mbpp/2", "union", "def similar_elements(a, b):\n    return tuple(set(a) | set(b))\n", (False, False)),
    ("Mbpp/2", "too_slow", "import time\ndef similar_elements(a, b):\n    time.sleep(3)\n"
     "    return tuple(set(a) & set(b))\n", (False, False)),
    ("Mbpp/3", "off_by_one", "def is_not_prime(n):\n    if n == 1:\n        return True\n"
     "    for i in range(2, n // 2):\n        if n % i == 0:\n            return True\n    return False\n",
     (True, False)),
    ("Mbpp/3", "exits_early", "import os\ndef is_not_prime(n):\n    os._exit(0)\n", (False, False)),
    # a candidate shares the harness's interpreter: replacing os.write / json.dumps must not rewrite the verdict
    ("Mbpp/3", "forges_verdict_os_write", "import os\n_w = os.write\n"
     "os.write = lambda fd, d: _w(fd, d.replace(b'\"fail\"', b'\"pass\"'))\n"
     "def is_not_prime(n):\n    return False\n", (False, False)),
    ("Mbpp/3", "forges_verdict_json", "import json\n"
     "json.dumps = lambda o, *a, **k: '{\"status\": \"pass\", \"details\": []}'\n"
     "def is_not_prime(n):\n    return False\n", (False, False)),
    ("Mbpp/4", "ascending", "def heap_queue_largest(nums, n):\n    return sorted(nums)[-n:]\n", (False, False)),
    ("Mbpp/4", "tuple_not_list", "import heapq\ndef heap_queue_largest(nums, n):\n"
     "    return tuple(heapq.nlargest(n, nums))\n", (False, False)),
    ("Mbpp/6", "popcount_negative", "def differ_At_One_Bit_Pos(a, b):\n    return bin(a ^ b).count('1') == 1\n",
     (True, False)),
    ("Mbpp/6", "int_for_bool", "def differ_At_One_Bit_Pos(a, b):\n    x = a ^ b\n"
     "    return int(x > 0 and x & (x - 1) == 0)\n", (True, True)),
    ("Mbpp/7", "three_letters", "import re\ndef find_char_long(text):\n    return re.findall(r'\\b\\w{3,}\\b', text)\n",
     (False, False)),
    ("Mbpp/7", "prints_and_right", "import re\nprint('loading')\ndef find_char_long(text):\n"
     "    print(text)\n    return re.findall(r'\\b\\w{4,}\\b', text)\n", (True, True)),
    ("Mbpp/7", "import_error", "import no_such_module\ndef find_char_long(text):\n    return []\n",
     (False, False)),
    # the release's Mbpp/793 has no plus inputs (`plus_input: {}`): its plus verdict is its base verdict
    ("Mbpp/793", "first_position", "def last(arr, x):\n    return arr.index(x)\n", (False, False)),
    ("Mbpp/793", "loop", "def last(arr, x):\n    i = -1\n    for j, a in enumerate(arr):\n"
     "        if a == x:\n            i = j\n    return i\n", (True, True)),
]
CANONICAL = [(tid, "canonical", None, (True, True)) for tid in [*HE_ROWS, *MBPP_ROWS]]
# EvalPlus 0.3.1's find_zero oracle never records an input as passed (evalplus PR #201): a departure
KNOWN_EVALPLUS_BUGS = {("HumanEval/32", "canonical")}


def _record(tid: str) -> dict:
    if tid in HE_ROWS:
        return release_record(HE_ROWS[tid], 0, "humaneval")
    return release_record(MBPP_ROWS[tid], 0, "mbpp")


@pytest.fixture(scope="module")
def runner():
    return EvalPlusRunner(always_run_plus=True)


# --------------------------------------------------------------------------- loading


def test_release_fixture_loads_through_the_benchmark_loaders():
    he, report = load_benchmark_checked("humaneval_plus", path=HE_FILE)
    mb, _ = load_benchmark_checked("mbpp_plus", path=MBPP_FILE)
    assert [r["id"] for r in he] == list(HE_ROWS) and [r["id"] for r in mb] == list(MBPP_ROWS)
    assert report["problems"] == 5 and report["official_size"] == 164
    for rec in he + mb:
        assert rec["kind"] == "code" and rec["gold"] == "" and is_evalplus_record(rec)
        assert rec["base_inputs"] and isinstance(rec["plus_inputs"], list)
    assert MBPP_ROWS["Mbpp/793"]["plus_input"] == {} and mb[-1]["plus_inputs"] == []  # as EvalPlus iterates it
    row = HE_ROWS["HumanEval/0"]
    assert he[0]["prompt"] == HUMANEVAL_TEMPLATE.format(prompt=row["prompt"])
    assert he[0]["prefix"] == row["prompt"] and he[0]["setup"] == "from typing import List"
    assert he[0]["canonical_solution"] == row["prompt"] + row["canonical_solution"]
    assert he[1]["atol"] == 1e-6
    # the same MBPP prompt as the HF-format rows: the task sentence + the original asserts (3 at most)
    mbpp2 = mb[0]
    asserts = [a.strip() for a in MBPP_ROWS["Mbpp/2"]["assertion"].strip().splitlines()]
    assert mbpp2["prompt"] == MBPP_TEMPLATE.format(
        text="Write a function to find the shared elements from the given two lists.",
        tests="\n".join(asserts[:3]))
    assert mbpp2["entry_point"] == "similar_elements" and mbpp2["setup"] == ""


def test_bad_release_rows_are_one_line_errors_naming_file_and_row(tmp_path):
    rows = list(HE_ROWS.values())[:2]
    bad = dict(rows[1])
    del bad["plus_input"]
    path = tmp_path / "humaneval_plus.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps(rows[0]) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError) as err:
        load_benchmark_checked("humaneval_plus", path=path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "row 2" in msg and "plus_input" in msg
    bad = dict(rows[1], atol="tiny")
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"row 1: .*atol 'tiny'"):
        load_benchmark_checked("humaneval_plus", path=path)


def test_time_limits_are_evalplus_defaults():
    assert time_limits([0.0, 0.1, 0.5]) == [1.0, 1.0, 2.0]
    assert time_limits([0.5], min_time_limit=3.0, gt_time_limit_factor=2.0) == [3.0]


# --------------------------------------------------------------------------- scoring


@linux_only
@pytest.mark.parametrize("tid,name,solution,expected", CANONICAL + CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CANONICAL + CASES])
def test_verdicts_match_evalplus(runner, evalplus_reference, tid, name, solution, expected):
    rec = _record(tid)
    program = rec["canonical_solution"] if solution is None else build_program(solution, rec)
    res = runner.check(rec, program)
    assert (res.base, res.base_status == "pass" and res.plus_status == "pass") == expected, res
    assert res.plus == (expected[0] and expected[1])
    if evalplus_reference is None:
        return
    theirs = evalplus_reference(tid, rec, program)
    if (tid, name) in KNOWN_EVALPLUS_BUGS:
        assert theirs == (False, False) and expected == (True, True)
    else:
        assert theirs == expected, f"EvalPlus says {theirs}"


@pytest.fixture(scope="module")
def evalplus_reference():
    """EvalPlus 0.3.1's own verdicts (``untrusted_check`` on expected outputs from ``trusted_exec``), or
    None when the package is not installed (the expected verdicts above were read off its code)."""
    try:
        from evalplus.eval import PASS, untrusted_check
        from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
        from evalplus.gen.util import trusted_exec
    except ImportError:
        return None
    # evalplus.data pulls in download helpers it never uses here: stand-ins for them
    stubs = {"wget": types.ModuleType("wget"), "tempdir": types.ModuleType("tempdir"),
             "appdirs": types.ModuleType("appdirs")}
    stubs["appdirs"].user_cache_dir = lambda *a, **k: "/nonexistent"
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update({k: v for k, v in stubs.items() if saved[k] is None})
    try:
        from evalplus.data.mbpp import mbpp_deserialize_inputs
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)

    cache = {}

    def verdict(tid, rec, program):
        dataset = rec["evalplus_dataset"]
        if tid not in cache:
            sets = {}
            for name in ("base", "plus"):
                inputs = rec[f"{name}_inputs"]
                if dataset == "mbpp":
                    inputs = mbpp_deserialize_inputs(tid, inputs)
                out, times = trusted_exec(rec["canonical_solution"], inputs, rec["entry_point"],
                                          record_time=True,
                                          output_not_none=rec["entry_point"] in MBPP_OUTPUT_NOT_NONE_TASKS)
                sets[name] = (inputs, out, times)
            cache[tid] = sets
        stats = []
        for name in ("base", "plus"):
            inputs, out, times = cache[tid][name]
            stat, _ = untrusted_check(dataset, program, inputs, rec["entry_point"], expected=out,
                                      atol=rec["atol"], ref_time=times, fast_check=True)
            stats.append(stat == PASS)
        return tuple(stats)

    return verdict


def test_evalplus_reference_is_installed(evalplus_reference):
    """Says (as a skip) when the comparison with EvalPlus's own evaluator did not run."""
    if evalplus_reference is None:
        pytest.skip("evalplus not installed: verdicts checked against those read off its code only")


# --------------------------------------------------------------------------- through the grader


@linux_only
def test_code_grader_scores_release_records_with_plus_and_records_base():
    recs = [_record("HumanEval/0"), _record("HumanEval/0"), _record("Mbpp/3"), _record("Mbpp/3")]
    body = HE_ROWS["HumanEval/0"]["canonical_solution"]
    responses = [
        f"```python\n{HE_ROWS['HumanEval/0']['prompt']}{body}```",           # full function
        "```python\ndef has_close_elements(numbers, threshold):\n"
        "    s = sorted(numbers)\n    return any(b - a <= threshold for a, b in zip(s, s[1:]))\n```",
        "Here:\n```python\nimport math\ndef is_not_prime(n):\n    if n == 1:\n        return True\n"
        "    return any(n % i == 0 for i in range(2, int(math.sqrt(n)) + 1))\n```",
        "no code at all",
    ]
    with make_grader("code", code_workers=2) as grade:
        res = grade(responses, recs)
    assert [r.correct for r in res] == [True, False, True, False]
    assert [r.base for r in res] == [True, True, True, False]  # no code fails the base tests too
    assert [r.detail for r in res] == ["passed", "failed", "passed", "no_code"]


@linux_only
def test_base_pass_at_1_counts_samples_that_never_reach_the_tests():
    # base_pass@1 once averaged only the samples that were run, so a response without code left its denominator
    from giftlab.evaluation.generation import Sample
    from giftlab.evaluation.runner import evaluate

    he0 = HE_ROWS["HumanEval/0"]
    canned = {"HumanEval/0": [f"```python\n{he0['prompt']}{he0['canonical_solution']}```", "no code"],
              "Mbpp/3": ["no code", "I cannot solve this."]}

    class CannedGenerator:
        backend = "canned"

        def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
            return [[Sample(text=t, num_tokens=1, finish_reason="stop", seed=seed + i)
                     for i, t in enumerate(canned[p])] for p in prompts]

    records = [_record("HumanEval/0"), _record("Mbpp/3")]
    with make_grader("code", code_workers=1) as grade:
        rows, summary = evaluate(CannedGenerator(), records, n_samples=2, temperature=0.0, max_new_tokens=8,
                                 seed=0, grade_fn=grade, ks=(1,), progress=False,
                                 prompt_fn=lambda r: r["id"])
    assert [r["base_correct"] for r in rows] == [True, False, False, False]
    assert summary["pass@1"] == summary["base_pass@1"] == 0.25


@linux_only
def test_a_canonical_solution_that_fails_stops_the_job_before_sampling():
    """The canonical solutions run before any sample is drawn (their outputs are the expected ones): one that fails
    in the sandbox stops the job in one line naming its task; before, every sample of the task scored 0, counted
    only as grading errors in the summary, after the whole generation."""
    from giftlab.cli import JobFailed

    good, broken = _record("HumanEval/0"), _record("Mbpp/3")
    broken["canonical_solution"] = broken["canonical_solution"].replace("def ", "def broken_", 1)
    with make_grader("auto", code_workers=2) as grade:
        grade.check_references([good, {"kind": "math", "gold": "1"}])  # nothing to stop: math has no references
        with pytest.raises(JobFailed, match=r"^Mbpp/3.*: the canonical solution failed in the sandbox .*before any "
                                            r"sample was drawn\)$") as err:
            grade.check_references([good, broken])
    assert "\n" not in str(err.value)


def test_hf_format_rows_keep_their_test_script_path():
    row = {"task_id": "HumanEval/999", "prompt": "def add(a, b):\n    \"\"\"Add.\"\"\"\n", "entry_point": "add",
           "canonical_solution": "    return a + b\n",
           "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}
    from giftlab.evaluation.benchmarks import _humaneval_plus

    rec = _humaneval_plus(row, 0)
    assert "tests" in rec and not is_evalplus_record(rec)
    with make_grader("code", code_workers=1) as grade:
        good, bad = grade(["```python\ndef add(a, b):\n    return a + b\n```",
                           "```python\ndef add(a, b):\n    return a - b\n```"], [rec, rec])
    assert good.correct and good.base is None and not bad.correct


@linux_only
def test_a_whole_function_may_call_a_helper_its_prompt_defines(runner):
    """HumanEval/32's prompt defines `poly`, and the prompt asks for the complete function: an answer that defines
    find_zero and calls poly is right (it used to fail with a NameError: the prompt was only put in front of
    completion-style answers)."""
    rec = _record("HumanEval/32")
    body = HE_ROWS["HumanEval/32"]["canonical_solution"]
    assert "poly(" in body and "def poly" not in body
    res = runner.check(rec, build_program("import math\n\ndef find_zero(xs: list):" + body, rec))
    assert res.base and res.plus, res
