"""Benchmarks as they are distributed: every file format and row layout loads, and the load-time checks hold."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from giftlab.evaluation import benchmarks as bm
from giftlab.rowfiles import RowFileError, dataset_folder_files, find_data, read_rows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FORMATS = FIXTURES / "formats"
HF = FIXTURES / "benchmarks"


def hf_rows(name):
    return [json.loads(line) for line in (HF / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# ------------------------------------------------------------------------------------------ file formats

def test_official_gpqa_csv_loads_with_a_deterministic_shuffle_per_seed():
    csv_file = FORMATS / "gpqa_diamond.csv"
    recs, report = bm.load_benchmark_checked("gpqa", path=csv_file)
    assert [r["id"] for r in recs] == ["rec06pnAkLOr2t2mp", "rec0Arme2jcXQZnAW", "rec0wZvZgiz320KRs",
                                       "rec0yTRmO1o1xCA6H"]
    first = recs[0]
    assert first["choices"][ord(first["gold"]) - ord("A")] == "10^-4 eV"  # the CSV's "Correct Answer"
    assert first["prompt"].startswith("Two quantum states with energies E1 and E2")
    assert report["size_matches_official"] is False and report["official_size"] == 198  # 4 of 198 rows
    again = bm.load_benchmark("gpqa", path=csv_file)
    other = bm.load_benchmark("gpqa", path=csv_file, shuffle_seed=1)
    assert [r["permutation"] for r in again] == [r["permutation"] for r in recs]
    assert [r["permutation"] for r in other] != [r["permutation"] for r in recs]
    for r in other:
        assert r["choices"][ord(r["gold"]) - ord("A")] == r["choices"][r["permutation"].index(0)]


def test_gpqa_csv_equals_the_hub_rows_of_the_same_questions(tmp_path):
    """The hub's Idavidrein/gpqa is the same CSV: its rows as JSON Lines give the same records."""
    import csv

    with open(FORMATS / "gpqa_diamond.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    as_jsonl = tmp_path / "gpqa.jsonl"
    as_jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert bm.load_benchmark("gpqa", path=as_jsonl) == bm.load_benchmark("gpqa", path=FORMATS / "gpqa_diamond.csv")


@pytest.mark.parametrize("name", ["gsm8k", "math500", "arc_challenge", "mmlu_pro", "humaneval_plus"])
def test_the_same_rows_load_alike_from_every_file_format(tmp_path, name):
    rows = hf_rows(name)
    expected = bm.load_benchmark(name, path=HF / f"{name}.jsonl")
    files = {
        "jsonl.gz": tmp_path / f"{name}.jsonl.gz",
        "json": tmp_path / f"{name}.json",
        "parquet": tmp_path / f"{name}.parquet",
        "misnamed": tmp_path / f"{name}.data",  # the content decides, not the name
    }
    files["jsonl.gz"].write_bytes(gzip.compress((HF / f"{name}.jsonl").read_bytes()))
    files["json"].write_text(json.dumps(rows))
    write_parquet(files["parquet"], rows)
    shutil.copy(HF / f"{name}.jsonl", files["misnamed"])
    for kind, path in files.items():
        got = bm.load_benchmark(name, path=path)
        assert [(r["id"], r["prompt"], r["gold"]) for r in got] == \
            [(r["id"], r["prompt"], r["gold"]) for r in expected], kind


def test_a_downloaded_dataset_folder_reads_the_config_and_split_asked_for(tmp_path):
    """`hf download openai/gsm8k --repo-type dataset --local-dir D`: main/ and socratic/, train and test shards."""
    rows = hf_rows("gsm8k")
    (tmp_path / "README.md").write_text("---\nconfigs: ...\n---\n")
    write_parquet(tmp_path / "main" / "test-00000-of-00001.parquet", rows)
    write_parquet(tmp_path / "main" / "train-00000-of-00001.parquet", [{**rows[0], "question": "a train row"}])
    write_parquet(tmp_path / "socratic" / "test-00000-of-00001.parquet", [{**rows[0], "question": "socratic"}])
    write_parquet(tmp_path / ".cache" / "huggingface" / "main" / "test-x.parquet", rows[:1])
    assert [p.relative_to(tmp_path).as_posix() for p in dataset_folder_files(tmp_path, "main", "test")] == \
        ["main/test-00000-of-00001.parquet"]
    got = bm.load_benchmark("gsm8k", path=tmp_path)
    assert [r["prompt"] for r in got] == [r["prompt"] for r in bm.load_benchmark("gsm8k", path=HF / "gsm8k.jsonl")]
    with pytest.raises(RowFileError, match="no data file for split 'validation' .files name test, train."):
        dataset_folder_files(tmp_path, "main", "validation")


HUMANEVAL_CARD = """---
dataset_info:
  features:
  - {name: task_id, dtype: string}
configs:
- config_name: default
  data_files:
  - split: test
    path: data/test-*
---
# HumanEval+
"""


def test_a_folder_reads_the_files_its_dataset_card_names_and_no_others(tmp_path):
    """A downloaded folder that also holds a copy of its data outside the card's `configs: data_files` (a root
    test.jsonl beside data/test-*.parquet) is read as `datasets` reads it: the card's files only."""
    rows = hf_rows("humaneval_plus")
    (tmp_path / "README.md").write_text(HUMANEVAL_CARD)
    write_parquet(tmp_path / "data" / "test-00000-of-00001-5973903632b82d40.parquet", rows)
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({**r, "test": r["test"] + "\n# other"}) + "\n"
                                                 for r in rows))  # another version of the tests
    assert [p.relative_to(tmp_path).as_posix() for p in dataset_folder_files(tmp_path, None, "test")] == \
        ["data/test-00000-of-00001-5973903632b82d40.parquet"]
    recs, report = bm.load_benchmark_checked("humaneval_plus", path=tmp_path)
    assert report["rows_read"] == len(rows) and report["duplicates_dropped"] == 0
    assert [r["tests"] for r in recs] == [r["tests"] for r in bm.load_benchmark("humaneval_plus",
                                                                               path=HF / "humaneval_plus.jsonl")]
    # patterns as `datasets` resolves them: `*` stays within a folder, `**` crosses them, `./` is the folder
    (tmp_path / "data" / "old").mkdir()
    (tmp_path / "data" / "old" / "test.jsonl").write_text("")
    for pattern, expected in [("data/*.parquet", ["data/test-00000-of-00001-5973903632b82d40.parquet"]),
                              ("./data/test-*", ["data/test-00000-of-00001-5973903632b82d40.parquet"]),
                              ("**/test*.jsonl", ["data/old/test.jsonl", "test.jsonl"])]:
        (tmp_path / "README.md").write_text(HUMANEVAL_CARD.replace("data/test-*", f'"{pattern}"'))
        assert [p.relative_to(tmp_path).as_posix() for p in dataset_folder_files(tmp_path, None, "test")] == expected
    (tmp_path / "README.md").write_text(HUMANEVAL_CARD)
    (tmp_path / "data" / "test-00000-of-00001-5973903632b82d40.parquet").unlink()
    with pytest.raises(RowFileError, match=r"README.md: its configs name data/test-\* for the default config, "
                                           r"split test: no such file here"):
        dataset_folder_files(tmp_path, None, "test")


def test_a_card_whose_yaml_does_not_parse_is_one_line_naming_it(tmp_path):
    """`datasets` refuses such a card; guessing by path would read HumanEval+'s root test.jsonl beside data/."""
    from giftlab.rowfiles import dataset_folder_files

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test-00000-of-00001.parquet").write_bytes(b"PAR1")
    (tmp_path / "test.jsonl").write_text("{}\n")
    (tmp_path / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files: [data/test-*\n---\n")
    with pytest.raises(RowFileError, match=rf"^{tmp_path}/README.md: its YAML header does not parse at line 4 "):
        dataset_folder_files(tmp_path, None, "test")


def test_a_card_with_one_config_per_subject_leaves_the_subject_folders_to_the_loader(tmp_path):
    from giftlab.rowfiles import card_data_files

    (tmp_path / "README.md").write_text("---\nconfigs:\n- config_name: anatomy\n  data_files: anatomy/test-*\n"
                                        "- config_name: virology\n  data_files: virology/test-*\n---\n")
    assert card_data_files(tmp_path) is None  # no default among several: every subject is read
    assert card_data_files(tmp_path, "virology") == ["virology/test-*"]  # a bare pattern is the train split's
    assert card_data_files(tmp_path, "virology", "test") is None


def test_the_official_gpqa_folder_picks_the_diamond_csv(tmp_path):
    shutil.copy(FORMATS / "gpqa_diamond.csv", tmp_path / "gpqa_diamond.csv")
    with open(FORMATS / "gpqa_diamond.csv") as src:
        header_and_one = "".join(src.readlines()[:1])
    (tmp_path / "gpqa_main.csv").write_text(header_and_one)
    assert len(bm.load_benchmark("gpqa", path=tmp_path)) == 4


def test_mmlu_redux_folder_tags_each_row_with_its_subject_folder(tmp_path):
    rows = hf_rows("mmlu_redux")
    for subject in ("anatomy", "virology"):
        write_parquet(tmp_path / subject / "test-00000-of-00001.parquet",
                      [{k: v for k, v in r.items() if k not in ("subject", "config")} for r in rows[:2]]
                      if subject == "anatomy" else
                      [{**{k: v for k, v in r.items() if k not in ("subject", "config")}, "question": f"v {i}"}
                       for i, r in enumerate(rows[:2])])
    recs = bm.load_benchmark("mmlu_redux", path=tmp_path)
    assert {r["subject"] for r in recs} == {"anatomy", "virology"}


def test_the_mmlu_redux_download_of_one_save_to_disk_folder_per_subject_loads(tmp_path):
    """edinburgh-dawg/mmlu-redux-2.0 as downloaded: <subject>/{data-00000-of-00001.arrow, dataset_info.json,
    state.json}; each subject folder is read with load_from_disk and its JSON metadata never as rows."""
    datasets = pytest.importorskip("datasets")
    rows = [{k: v for k, v in r.items() if k != "subject"} for r in hf_rows("mmlu_redux")]  # upstream columns
    (tmp_path / "README.md").write_text("---\nconfigs: ...\n---\n")
    (tmp_path / ".gitattributes").write_text("*.arrow filter=lfs\n")
    for subject in ("anatomy", "virology"):
        datasets.Dataset.from_list([{**r, "question": f"{subject}: {r['question']}"} for r in rows]) \
            .save_to_disk(str(tmp_path / subject))
    assert sorted(p.name for p in (tmp_path / "anatomy").iterdir()) == \
        ["data-00000-of-00001.arrow", "dataset_info.json", "state.json"]
    assert dataset_folder_files(tmp_path) == [tmp_path / "anatomy", tmp_path / "virology"]
    recs, report = bm.load_benchmark_checked("mmlu_redux", path=tmp_path)
    flat = bm.load_benchmark("mmlu_redux", path=HF / "mmlu_redux.jsonl")  # the error-free rows: 1 and 4
    assert [(r["subject"], r["gold"], r["prompt"]) for r in recs] == \
        [(s, f["gold"], f"{s}: {f['prompt']}") for s in ("anatomy", "virology") for f in flat]
    assert report["rows_read"] == 2 * len(rows)

    shard = tmp_path / "virology" / "data-00000-of-00001.arrow"
    whole = shard.read_bytes()
    shard.write_bytes(whole[:300])  # a torn download
    with pytest.raises(RowFileError) as err:
        bm.load_benchmark("mmlu_redux", path=tmp_path)
    assert str(err.value).startswith(f"{shard}: not a readable save_to_disk dataset (ArrowInvalid") and \
        "\n" not in str(err.value)
    shard.write_bytes(whole)
    (tmp_path / "anatomy" / "state.json").write_text("{oops")
    with pytest.raises(RowFileError, match=r"anatomy/state.json: not a readable save_to_disk dataset"):
        bm.load_benchmark("mmlu_redux", path=tmp_path)
    (tmp_path / "anatomy" / "state.json").unlink()
    with pytest.raises(RowFileError, match=r"anatomy/data-00000-of-00001.arrow: an .arrow shard outside a "
                                           r"save_to_disk folder \(no state.json beside it\)"):
        bm.load_benchmark("mmlu_redux", path=tmp_path)


def test_save_to_disk_folders_load(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = hf_rows("math500")
    expected = bm.load_benchmark("math500", path=HF / "math500.jsonl")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dict"))
    assert bm.load_benchmark("math500", path=tmp_path / "one") == expected
    assert bm.load_benchmark("math500", path=tmp_path / "dict") == expected
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "wrong"))
    with pytest.raises(RowFileError, match=r"wrong: a DatasetDict without split 'test' \(it has train\)"):
        bm.load_benchmark("math500", path=tmp_path / "wrong")


# ------------------------------------------------------------------------------------------ row layouts

def test_verl_parquet_keeps_its_prompt_and_ground_truth():
    recs = bm.load_benchmark("math500", path=FORMATS / "verl_math500_test.parquet")
    hf = bm.load_benchmark("math500", path=HF / "math500.jsonl")[:3]
    assert [r["gold"] for r in recs] == [r["gold"] for r in hf]
    assert [r["id"] for r in recs] == ["0", "1", "2"]
    assert recs[0]["prompt"].startswith("Convert the point $(0,3)$") and \
        recs[0]["prompt"].endswith("output the final answer within \\boxed{}.")
    assert bm.row_layout({"prompt": [{"role": "user", "content": "x"}], "reward_model": {}}) == "verl"


def test_verl_rows_are_refused_for_multiple_choice(tmp_path):
    path = write_parquet(tmp_path / "gpqa.parquet", [{"prompt": [{"role": "user", "content": "Q?"}],
                                                      "reward_model": {"ground_truth": "B"}}])
    with pytest.raises(ValueError, match=r"gpqa.parquet: row 1: gpqa \(verl layout\): .*multiple_choice"):
        bm.load_benchmark("gpqa", path=path)


def test_qwen25_math_aime_layout_takes_gold_from_the_boxed_solution():
    recs = bm.load_benchmark("aime24", path=FORMATS / "qwen25math_aime24_test.jsonl")
    assert [(r["id"], r["gold"]) for r in recs] == [("60", "204"), ("67", "25"), ("85", "80")]
    assert recs[0]["prompt"].endswith("put your final answer within \\boxed{}.")


def test_qwen25_math_processed_rows_use_gt(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps({"idx": 3, "question": "What is 2+2?", "gt_cot": "2+2=4", "gt": "4"}) + "\n")
    assert [(r["id"], r["gold"]) for r in bm.load_benchmark("math500", path=path)] == [("3", "4")]


# ------------------------------------------------------------------------------------------ checks on load

def test_repeated_problems_are_dropped_with_a_count_or_refused(tmp_path):
    rows = [json.loads(line) for line in (FORMATS / "qwen25math_aime24_test.jsonl").read_text().splitlines()]
    repeated = tmp_path / "aime24.jsonl"  # like a public file holding 960 rows for 30 problems
    repeated.write_text("".join(json.dumps({**r, "id": f"{r['id']}-{k}"}) + "\n" for k in range(4) for r in rows))
    recs, report = bm.load_benchmark_checked("aime24", path=repeated)
    assert len(recs) == 3 and report["duplicates_dropped"] == 9 and report["rows_read"] == 12
    assert report["size_matches_official"] is False
    with pytest.raises(ValueError, match=r"aime24.jsonl: row 4: duplicate problem '60-1' \(same as row 1\)"):
        bm.load_benchmark("aime24", path=repeated, duplicates="error")


def test_same_problem_with_another_gold_is_an_error(tmp_path):
    rows = hf_rows("math500")
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[0], "unique_id": "x", "answer": "7"}) + "\n")
    with pytest.raises(ValueError, match="m.jsonl: row 2: duplicate problem 'x' with a different gold answer"):
        bm.load_benchmark("math500", path=path)


@pytest.mark.parametrize("name, change, message", [
    ("math500", lambda r: {**r, "answer": " "}, "row 1: empty gold answer"),
    ("math500", lambda r: {**r, "problem": "\n"}, "row 1: math500 .*empty question"),
    ("gpqa", lambda r: {**r, "Incorrect Answer 3": None}, r"row 1: gpqa .*Incorrect Answer 3"),
    # options of the wrong type: a string was split into one option per character, a null became "None"
    ("mmlu_pro", lambda r: {**r, "options": "ABCDEFGHIJ"}, "row 1: mmlu_pro .*options must be a list of options, got str"),
    ("mmlu_pro", lambda r: {**r, "options": [*r["options"][:9], None]}, "row 1: mmlu_pro .*options holds a null option"),
    ("mmlu_redux", lambda r: {**r, "choices": "wxyz"}, "row 1: mmlu_redux .*choices must be a list of options"),
    # a null label was read as the label "None" and the row dropped without a word
    ("mmlu_redux", lambda r: {**r, "error_type": None}, "row 1: mmlu_redux .*error_type None is not one of MMLU-Redux's"),
    ("arc_challenge", lambda r: {**r, "choices": {"text": r["choices"]["text"] + ["extra"], "label": r["choices"]["label"]}},
     "row 1: arc_challenge .*choices has 5 texts and 4 labels"),
])
def test_bad_rows_name_file_and_row(tmp_path, name, change, message):
    rows = hf_rows(name)
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(change(r) if i == 0 else r) + "\n" for i, r in enumerate(rows)))
    with pytest.raises(ValueError, match=message) as exc:
        bm.load_benchmark(name, path=path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_option_counts_and_gold_letters_are_checked(tmp_path):
    rec = {"id": "q1", "prompt": "Q?", "kind": "multiple_choice", "gold": "A",
           "choices": [f"option {i}" for i in range(10)]}
    path = tmp_path / "gpqa.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match="gpqa.jsonl: row 1: 10 options; gpqa questions have 4"):
        bm.load_benchmark("gpqa", path=path)
    path.write_text(json.dumps({**rec, "choices": rec["choices"][:4], "gold": "E"}) + "\n")
    with pytest.raises(ValueError, match="row 1: gold 'E' is not one of the letters A..D"):
        bm.load_benchmark("gpqa", path=path)
    path.write_text(json.dumps({**rec, "choices": rec["choices"][:4]}) + "\n")
    assert bm.load_benchmark("gpqa", path=path)[0]["gold"] == "A"


# ------------------------------------------------------------------------------------------ finding files

def test_find_data_takes_any_format_and_refuses_two(tmp_path):
    assert find_data(tmp_path, "math500") is None
    write_parquet(tmp_path / "math500.parquet", hf_rows("math500"))
    assert find_data(tmp_path, "math500") == tmp_path / "math500.parquet"
    (tmp_path / "gpqa").mkdir()
    assert find_data(tmp_path, "gpqa") == tmp_path / "gpqa"
    shutil.copy(HF / "math500.jsonl", tmp_path / "math500.jsonl")
    with pytest.raises(RowFileError, match="math500.parquet and math500.jsonl are both benchmark 'math500'"):
        find_data(tmp_path, "math500")


def test_unreadable_files_fail_in_one_line(tmp_path):
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"PAR1 truncated")
    with pytest.raises(RowFileError, match="x.parquet: not a readable parquet file"):
        read_rows(bad)
    gz = tmp_path / "x.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"a": 1}\n')[:-6])
    with pytest.raises(RowFileError, match="x.jsonl.gz: not a readable gzip file"):
        read_rows(gz)
    text = tmp_path / "x.txt"
    text.write_text("just some words\n")
    with pytest.raises(RowFileError, match="x.txt: not parquet, gzip, JSON, JSON Lines or a CSV"):
        read_rows(text)
    named = tmp_path / "x.jsonl"  # named JSON Lines: its bad first row is a JSON error, not a CSV header
    named.write_text('question,answer\n{"a": 1}\n')
    with pytest.raises(RowFileError, match=r"x.jsonl: row 1: not valid JSON \(Expecting value, column 1\)$"):
        read_rows(named)
    named.write_text("\n \n")
    with pytest.raises(RowFileError, match=r"x.jsonl: empty file$"):
        read_rows(named)


def test_json_lines_end_at_newlines_only(tmp_path):
    """JSON strings may hold U+2028 / U+2029 unescaped (public GPQA copies do); str.splitlines() split rows there."""
    rows = [{"id": "1", "question": "first\u2028line"}, {"id": "2", "question": "page\u2029break\x85next"}]
    for name, opener in (("x.jsonl", open), ("x.jsonl.gz", gzip.open)):
        path = tmp_path / name
        with opener(path, "wt", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows))
        assert read_rows(path) == rows


def test_a_truncated_csv_fails_naming_the_short_row(tmp_path):
    """A CSV cut short (a download that stopped) leaves its last record with fewer fields than the header: csv's
    DictReader fills them with None, and the GPQA loader would take the cut record (its options before the cut,
    its 'Record ID' lost, so another id and another shuffle) as a whole question."""
    data = (FORMATS / "gpqa_diamond.csv").read_bytes()
    cut = tmp_path / "gpqa.csv"
    cut.write_bytes(data[:data.index(b"rec0yTRmO1o1xCA6H")])  # the 4th record up to its Record ID
    with pytest.raises(RowFileError, match=r"gpqa.csv: row 4: 26 fields, the header has 78"):
        bm.load_benchmark("gpqa", path=cut)
    short = tmp_path / "short.csv"
    short.write_text("question,answer,extra\nq1,#### 1,x\nq2,#### 2\n")
    with pytest.raises(RowFileError, match=r"short.csv: row 2: 2 fields, the header has 3"):
        read_rows(short)
    # cut inside a quoted field: csv read the rest of the file into it, the record short of nothing
    inside = tmp_path / "inside.csv"
    inside.write_text('question,answer,extra\nq1,#### 1,x\nq2,#### 2,"a note that was\ncut')
    with pytest.raises(RowFileError, match=r"inside.csv: row 2: not valid CSV \(unexpected end of data"):
        read_rows(inside)
    # quoting the writers make stays readable: empty trailing and quoted empty fields, a quote inside a field
    fine = tmp_path / "fine.csv"
    fine.write_text('a,b,c\n1,2,\n1,"",""\n1,ab"c,"x\ny"\n')
    assert [r["c"] for r in read_rows(fine)] == ["", "", "x\ny"]


@pytest.mark.parametrize("test, entry", [
    ('assert remove_Occ("hello","l") == "heo"', "remove_Occ"),
    ("assert math.isclose(volume_cylinder(10,5), 1570.75, rel_tol=0.001)", "volume_cylinder"),
    ("assert set(similar_elements((3, 4),(5, 4))) == set((4,))", "similar_elements"),
    ("assert not is_not_prime(2)", "is_not_prime"),
    ("assert not(is_prime(4))", "is_prime"),
    # a builtin around the call was taken for the function (abs, sorted), so the wrong code block was picked
    ("assert abs(volume(2) - 8) < 1e-6", "volume"),
    ("assert sorted(find_pairs([1, 2])) == [1, 2]", "find_pairs"),
])
def test_mbpp_entry_point_is_the_asserted_function(test, entry):
    assert bm._mbpp_entry_point([test], "def helper():\n    pass\n") == entry


def test_mbpp_entry_point_prefers_what_the_reference_code_defines_and_skips_string_literals():
    # a call-like text inside a string literal is not the function; a function named like a builtin is found
    assert bm._mbpp_entry_point(['assert "max(a)" == to_text([1])'], "def helper():\n    pass\n") == "to_text"
    assert bm._mbpp_entry_point(["assert 'f(x)' == g('a\\'b(c)')"], "") == "g"
    assert bm._mbpp_entry_point(["assert sum([1, 2]) == 3"], "def sum(xs):\n    return 3\n") == "sum"
    assert bm._mbpp_entry_point(["assert abs(helper(2)) == main(2)"], "def main(x):\n    return x\n") == "main"


def test_mbpp_entry_point_falls_back_to_the_reference_codes_def():
    assert bm._mbpp_entry_point([], "import math\ndef first(a):\n    return a\ndef second(b):\n    return b\n") == "first"
    assert bm._mbpp_entry_point(["assert len([1]) == 1"], "") is None


def test_two_copies_of_a_benchmark_stop_the_plan_in_one_config_line(tmp_path):
    from giftlab.cli import ConfigError
    from giftlab.config import load_config
    from giftlab.plan import Plan
    from helpers import REPO

    config = load_config(REPO / "params.yaml", REPO / "config" / "paper.yaml")
    config["eval"]["benchmark_dir"] = str(tmp_path)
    write_parquet(tmp_path / "math500.parquet", hf_rows("math500"))
    shutil.copy(HF / "math500.jsonl", tmp_path / "math500.jsonl")
    with pytest.raises(ConfigError, match=r"^config error: eval.benchmark_dir: .*math500.parquet and math500.jsonl are "
                                          r"both benchmark 'math500': keep one$"):
        Plan(config).benchmark_files("all")
