"""Benchmark registry: name -> loader returning records ``{id, prompt, gold, kind, ...}``.

Record schema (every benchmark, every source):

* ``id`` (str, unique), ``prompt`` (the user message, instructions included), ``gold`` (str),
  ``kind``: ``math`` | ``multiple_choice`` | ``code``;
* multiple choice: ``choices`` (the options in the order shown), ``gold`` = the letter;
  GPQA also ``permutation`` (shown position i holds original option ``permutation[i]``; original
  0 = the correct answer) and ``shuffle_seed``;
* code: ``tests`` (a Python test script run after the solution), ``entry_point`` (function
  name or None), ``setup`` (imports prepended to the solution), ``prefix`` (HumanEval: the
  prompt, prepended when the solution does not define ``entry_point``); ``gold`` = "".

The ten real benchmarks load from the hub (``datasets.load_dataset(hub_id, config,
split=...)``; the local HF cache serves it offline) or, when ``path`` is given, from a local file or
folder in any format :mod:`giftlab.rowfiles` reads (jsonl, json, parquet, csv, gzip; a downloaded
dataset folder or a ``save_to_disk`` folder). Each row may be in one of these layouts, recognised by
its keys (:func:`row_layout`):

* ``record``: already in the record schema above;
* ``verl``: verl-style RL data (``prompt`` = chat messages, ``reward_model.ground_truth``), the
  layout most RL repositories ship validation sets in (math benchmarks only: it carries no options);
* ``upstream``: the benchmark's own field names (HF hub, the official GPQA CSV, EvalPlus releases,
  Qwen2.5-Math's ``evaluation/data`` files and its ``gt`` outputs), read by the benchmark's
  normaliser.

:func:`load_benchmark_checked` then checks the records (:func:`check_records`): duplicates dropped
with a count (or refused), empty gold, option counts and gold letters, and the size against the
official set's, each failure one line naming the file and row.
"""

from __future__ import annotations

import builtins
import hashlib
import keyword
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from typing import Any, Callable

from giftlab.data import read_rows, with_instruction

from giftlab.evaluation.choice import LETTERS, format_mc_prompt, shuffle_choices
from giftlab.evaluation.code_prompts import HUMANEVAL_TEMPLATE, MBPP_TEMPLATE, import_lines  # noqa: F401
from giftlab.evaluation.evalplus import is_release_row, release_record
from giftlab.rewards.extract import last_boxed

log = logging.getLogger(__name__)

_BUILTIN_NAMES = frozenset(dir(builtins)) | frozenset(keyword.kwlist)  # not a test's function
REQUIRED_KEYS = ("id", "prompt", "gold", "kind")
KINDS = ("math", "multiple_choice", "code")

# loader(path=None, **options) -> (records, rows read): the rows count includes rows the loader filtered out
Loader = Callable[..., tuple[list[dict], int]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    loader: Loader
    needs_path: bool  # a local file is required (no hub fallback)
    description: str = ""
    kind: str = "math"
    hub_id: str | None = None
    config: str | None = None
    split: str | None = None
    source: dict = field(default_factory=dict)  # extra provenance (alternatives, notes)
    options: tuple[int, int] | None = None  # multiple choice: the possible number of options
    official_size: int | None = None  # problems in the official set (rows before any filtering)
    # the official set holds the same question under distinct ids, each scored by its own evaluation (MMLU-Pro:
    # 159 pairs in health and law; MMLU-Redux: questions MMLU files under two subjects): in a file of the official
    # size both are kept; in any other (a subset, a file joined to itself) they are duplicates
    repeats_are_items: bool = False


BENCHMARKS: dict[str, Benchmark] = {}


def register(name: str, loader: Loader, needs_path: bool = False, description: str = "",
             **meta) -> None:
    if name in BENCHMARKS:
        raise ValueError(f"benchmark {name!r} is already registered")
    BENCHMARKS[name] = Benchmark(name, loader, needs_path, description, **meta)


def load_jsonl_records(path, kinds: tuple[str, ...] = ("math",)) -> list[dict]:
    """Records from a local file (JSON Lines, or any format :func:`giftlab.rowfiles.read_rows` reads); each row needs
    ``id, prompt, gold, kind`` (in ``kinds``).

    Errors are one line naming the file and the 1-based row. ``gold`` is kept as a string.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    records, seen = [], set()
    for row, rec in enumerate(read_rows(path), start=1):
        missing = [k for k in REQUIRED_KEYS if k not in rec]
        if missing:
            raise ValueError(f"{path}: row {row}: missing key(s) {', '.join(missing)}")
        _refuse_nulls(rec, f"{path}: row {row}")
        if rec["kind"] not in kinds:
            raise ValueError(f"{path}: row {row}: kind {rec['kind']!r} not supported "
                             f"(expected one of {', '.join(kinds)})")
        if rec["kind"] == "multiple_choice":
            choices = rec.get("choices")
            if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
                raise ValueError(f"{path}: row {row}: 'choices' must be a list of 2..{len(LETTERS)} "
                                 f"options")
            if str(rec["gold"]) not in LETTERS[:len(choices)]:
                raise ValueError(f"{path}: row {row}: gold {rec['gold']!r} is not one of the "
                                 f"letters A..{LETTERS[len(choices) - 1]}")
        rid = str(rec["id"])
        if rid in seen:
            raise ValueError(f"{path}: row {row}: duplicate id {rid!r}")
        seen.add(rid)
        records.append({**rec, "id": rid, "prompt": str(rec["prompt"]),
                        "gold": "" if rec["gold"] is None else str(rec["gold"]), "source_row": row})
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def _local_records(name: str, kinds: tuple[str, ...]) -> Loader:
    def load(path=None, **_) -> list[dict]:
        if path is None:
            raise ValueError(f"{name}: read from a local file only, and none was given (its copy in "
                             "eval.benchmark_dir)")
        records = load_jsonl_records(path, kinds)
        return records, len(records)
    return load


def register_local(name: str, kind: str = "math", description: str = "") -> None:
    """A benchmark of one's own: a file of records (``id, prompt, gold, kind``; multiple choice adds
    ``choices``) in ``eval.benchmark_dir`` (docs/architecture.md, "Adding a benchmark")."""
    if kind not in ("math", "multiple_choice"):  # code needs tests and a sandbox set-up: register() a loader
        raise ValueError(f"benchmark {name!r}: kind {kind!r} is not math or multiple_choice")
    register(name, _local_records(name, (kind,)), needs_path=True, kind=kind, description=description)


# The tiny world's analogues (giftlab.tinyworld.make_benchmarks writes them).
for _name, _kind, _what in (
        ("tiny_id", "math", "arithmetic chains like the SFT/RL problems (held out)"),
        ("tiny_ood", "math", "longer chains than any SFT/RL problem"),
        ("tiny_family", "math", "chains with division, an op only the pretraining corpus has"),
        ("tiny_mc", "multiple_choice", "in-distribution chains as multiple-choice items (which range holds the result)")):
    register_local(_name, _kind, description=f"tiny world: {_what} (data/tiny/benchmarks/{_name}.jsonl)")


# --------------------------------------------------------------------------- real benchmarks

def hub_rows(hub_id: str, config: str | None, split: str,
             alt_splits: tuple[str, ...] = ()) -> list[dict]:
    """Rows from the HF hub via ``datasets`` (served from the local cache when offline)."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover
        raise ValueError("loading from the hub needs the `datasets` package") from exc
    errors = []
    for sp in (split, *alt_splits):
        try:
            return list(datasets.load_dataset(hub_id, config, split=sp))
        except Exception as exc:  # noqa: BLE001 - report every attempt in one message
            first_line = (str(exc).strip().splitlines() or [""])[0][:200]
            errors.append(f"split {sp!r}: {type(exc).__name__}: {first_line}")
    raise ValueError(f"could not load {hub_id} (config {config!r}) from the hub or its cache "
                     f"({'; '.join(errors)}); give the benchmark a local copy in eval.benchmark_dir, named after it "
                     "(<name>.jsonl, .parquet, or a folder <name>/: docs/scale.md, step 2)")


_MISSING = object()


def _get(row: dict, *names: str, default: Any = _MISSING):
    for n in names:
        if n in row and row[n] is not None:
            return row[n]
    if default is _MISSING:
        raise KeyError(f"none of the fields {', '.join(names)} present")
    return default


def _hash_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _is_record(row: dict) -> bool:
    return all(k in row for k in REQUIRED_KEYS)


def _gsm8k(row, i, **_):
    answer = str(_get(row, "answer"))
    if "####" not in answer:
        raise ValueError("answer has no '####' final-answer marker")
    gold = answer.split("####")[-1].strip().replace(",", "").replace("$", "").rstrip(".").strip()
    return {"id": str(_get(row, "id", default=f"gsm8k-{i}")),
            "prompt": with_instruction(str(_get(row, 'question'))),
            "gold": gold, "kind": "math"}


def _math_like(prefix):
    """MATH-500 / AIME rows in their hub field names, and Qwen2.5-Math's ``evaluation/data`` layouts: ``gt``
    (its processed rows), ``answer``, or for MATH-style rows with only a ``solution``, its last ``\\boxed{}``."""
    def norm(row, i, **_):
        problem = str(_get(row, "problem", "Problem", "question"))
        gold = _get(row, "answer", "Answer", "expected_answer", "final_answer", "gt", default=None)
        if gold is None and row.get("solution"):
            gold = last_boxed(str(row["solution"]))
            if gold is None:
                raise ValueError("no answer field, and the solution has no \\boxed{} answer")
        if gold is None:
            raise KeyError("none of the fields answer, Answer, expected_answer, final_answer, gt, solution present")
        if isinstance(gold, list):  # OlympiadBench-style final_answer lists
            gold = ", ".join(str(g) for g in gold)
        rid = _get(row, "unique_id", "id", "ID", "idx", default=f"{prefix}-{i}")
        return {"id": str(rid), "prompt": with_instruction(problem),
                "gold": str(gold).strip(), "kind": "math"}
    return norm


def _options(value, field: str) -> list:
    """A row's options as a list: a list/tuple (or a parquet array) of non-null values. A string is refused, not
    split into one option per character."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{field} must be a list of options, got {type(value).__name__}")
    if any(v is None for v in value):
        raise ValueError(f"{field} holds a null option")
    return list(value)


def _mc_record(rid, question, choices, gold_index, **extra):
    choices = [str(c).strip() for c in choices]
    if not 0 <= gold_index < len(choices):
        raise ValueError(f"answer index {gold_index} out of range for {len(choices)} choices")
    return {"id": str(rid), "prompt": format_mc_prompt(question, choices),
            "gold": LETTERS[gold_index], "kind": "multiple_choice", "choices": choices, **extra}


def _gpqa(row, i, shuffle_seed: int = 0, **_):
    question = str(_get(row, "Question")).strip()
    options = [_get(row, "Correct Answer")] + [_get(row, f"Incorrect Answer {j}")
                                               for j in (1, 2, 3)]
    rid = str(_get(row, "Record ID", "id", default="") or _hash_id("gpqa", question))
    perm = shuffle_choices(options, int(shuffle_seed), rid)
    return _mc_record(rid, question, [options[p] for p in perm], perm.index(0),
                      permutation=perm, shuffle_seed=int(shuffle_seed))


#: MMLU-Pro's placeholder for a missing option (questions with fewer than ten are padded with it); TIGER-Lab's own
#: evaluation (``preprocess`` in evaluate_from_local.py / evaluate_from_api.py) drops these before building the prompt.
MMLU_PRO_PAD = "N/A"


def _mmlu_pro(row, i, **_):
    """Gold = the row's ``answer`` letter, which TIGER-Lab's evaluation scores against (``pred == answer`` in
    evaluate_from_local.py; ``answer_index`` only without a letter). Where the two disagree (one row of the official
    test split: question 3983) the record says so in ``gold_note``, reported by :func:`check_records`."""
    options = _options(_get(row, "options"), "options")
    index = row.get("answer_index")
    index = None if index is None else int(index)
    letter = str(row.get("answer") or "").strip() or None  # an empty cell (a CSV copy) is no letter
    if letter is None and index is None:
        raise ValueError("neither answer nor answer_index")
    if letter is not None and (len(letter) != 1 or letter not in LETTERS):
        raise ValueError(f"answer {letter!r} is not a letter A..J")
    idx = LETTERS.index(letter) if letter is not None else index
    note = {}
    if letter is not None and index is not None and index != idx:
        note = {"gold_note": f"answer {letter!r} disagrees with answer_index {index}: scored against the answer "
                             "letter, as TIGER-Lab's evaluation"}
    if 0 <= idx < len(options) and options[idx] == MMLU_PRO_PAD:
        raise ValueError(f"the answer (option {LETTERS[idx]}) is the padding option {MMLU_PRO_PAD!r}")
    kept = [j for j, opt in enumerate(options) if opt != MMLU_PRO_PAD]
    return _mc_record(_get(row, "question_id", default=f"mmlu_pro-{i}"), _get(row, "question"),
                      [options[j] for j in kept], kept.index(idx) if idx in kept else idx,
                      category=row.get("category"), **note)


def _redux_index(value) -> int | None:
    if value is None:
        return None
    v = str(value).strip()
    if v in ("A", "B", "C", "D"):
        return "ABCD".index(v)
    if v.isdigit() and 0 <= int(v) <= 3:
        return int(v)
    return None


# MMLU-Redux 2.0's error_type labels (edinburgh-dawg/mmlu-redux-2.0); eval.per_benchmark.mmlu_redux.mmlu_redux_keep
# names some of them
REDUX_ERROR_TYPES = ("ok", "wrong_groundtruth", "no_correct_answer", "multiple_correct_answers",
                     "bad_question_clarity", "bad_options_clarity", "expert")


def redux_label(value) -> str:
    """An MMLU-Redux ``error_type`` in the 2.0 release's spelling: its annotation files also write ``OK``, ``Ok``,
    ``Wrong Groundtruth``, ``bad question clarity`` (aryopg/mmlu-redux)."""
    return re.sub(r"[\s-]+", "_", value.strip().lower())


def _mmlu_redux(row, i, redux_keep=("ok",), redux_rekey: bool = False, **_):
    etype = row.get("error_type", "ok")  # MMLU-Redux 2.0 labels every row; the original release may not
    if not isinstance(etype, str) or redux_label(etype) not in REDUX_ERROR_TYPES:
        raise ValueError(f"error_type {etype!r} is not one of MMLU-Redux's labels "
                         f"({', '.join(REDUX_ERROR_TYPES)})")
    etype = redux_label(etype)
    subject = row.get("subject") or row.get("config") or "mmlu_redux"
    rid = row.get("id") or f"{subject}-{i}"
    idx = int(_get(row, "answer"))
    if etype == "wrong_groundtruth" and redux_rekey:
        new = _redux_index(row.get("correct_answer"))
        if new is None:
            return None
        idx = new
    elif etype not in redux_keep:
        return None
    return _mc_record(rid, _get(row, "question"), _options(_get(row, "choices"), "choices"), idx,
                      subject=subject, error_type=etype)


def _arc(row, i, **_):
    choices = _get(row, "choices")
    if not isinstance(choices, dict) or "text" not in choices or "label" not in choices:
        raise ValueError("choices must be an object with 'text' and 'label' lists")
    texts = _options(choices["text"], "choices.text")
    labels = [str(x).strip() for x in _options(choices["label"], "choices.label")]
    if len(texts) != len(labels):
        raise ValueError(f"choices has {len(texts)} texts and {len(labels)} labels")
    key = str(_get(row, "answerKey")).strip()
    if key not in labels:
        raise ValueError(f"answerKey {key!r} not among labels {labels}")
    return _mc_record(_get(row, "id", default=f"arc-{i}"), _get(row, "question"), texts,
                      labels.index(key))


def _humaneval_plus(row, i, **_):
    if is_release_row(row):  # EvalPlus release (base_input/plus_input): scored input by input
        return release_record(row, i, "humaneval")
    prompt, entry = str(_get(row, "prompt")), str(_get(row, "entry_point"))
    test = str(_get(row, "test"))
    return {"id": str(_get(row, "task_id", default=f"humaneval_plus-{i}")),
            "prompt": HUMANEVAL_TEMPLATE.format(prompt=prompt), "gold": "", "kind": "code",
            "tests": f"{test}\n\ncheck({entry})\n", "entry_point": entry,
            "setup": import_lines(prompt), "prefix": prompt}


def _mbpp_entry_point(test_list: list[str], code: str) -> str | None:
    """The function an MBPP test asserts on: the first call after ``assert`` that the reference code defines, else
    the first that is not a builtin or a dotted name (``abs(f(2) - 8)``, ``set(f(x))``, ``math.isclose(f(x), y)``
    name ``f``); names inside string literals are not calls. Without a call, the reference code's first def."""
    defined = re.findall(r"^def\s+([A-Za-z_]\w*)\s*\(", code, re.M)
    for test in test_list:
        _, _, after = test.partition("assert")
        after = re.sub(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'", "''", after)
        calls = re.findall(r"(?<![\w.])([A-Za-z_]\w*)\s*\(", after)
        for name in [n for n in calls if n in defined] or [n for n in calls if n not in _BUILTIN_NAMES]:
            return name
    return defined[0] if defined else None


def _mbpp_plus(row, i, **_):
    if is_release_row(row):  # EvalPlus release (base_input/plus_input): scored input by input
        return release_record(row, i, "mbpp")
    test_list = [str(t) for t in (_get(row, "test_list", default=[]) or [])]
    tests = str(_get(row, "test", default="") or "") or "\n".join(test_list)
    if not tests.strip():
        raise ValueError("no tests (fields test / test_list empty)")
    entry = _mbpp_entry_point(test_list, str(row.get("code", "")))
    text = str(_get(row, "prompt", "text")).strip()
    return {"id": f"Mbpp/{_get(row, 'task_id')}" if "task_id" in row else f"mbpp_plus-{i}",
            "prompt": MBPP_TEMPLATE.format(text=text, tests="\n".join(test_list[:3])),
            "gold": "", "kind": "code", "tests": tests + "\n", "entry_point": entry,
            "setup": "\n".join(str(x) for x in (row.get("test_imports") or [])), "prefix": ""}


def _refuse_nulls(rec: dict, where: str) -> None:
    """A null id, prompt or (but for code, graded by its tests) gold: str() would make it "None", a gold no answer
    can match."""
    nulls = [k for k in ("id", "prompt", "gold") if rec[k] is None and not (k == "gold" and rec["kind"] == "code")]
    if nulls:
        raise ValueError(f"{where}: {', '.join(nulls)} is null")


def _check_record(rec: dict, where: str) -> dict:
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    _refuse_nulls(rec, where)
    if rec["kind"] not in KINDS:
        raise ValueError(f"{where}: kind {rec['kind']!r} not supported")
    if rec["kind"] == "multiple_choice" and not rec.get("choices"):
        raise ValueError(f"{where}: multiple_choice record without choices")
    if rec["kind"] == "code" and not (rec.get("tests") or rec.get("base_inputs") is not None):
        raise ValueError(f"{where}: code record without tests")
    gold = "" if rec["gold"] is None else str(rec["gold"])  # null only for code (_refuse_nulls)
    return {**rec, "id": str(rec["id"]), "prompt": str(rec["prompt"]), "gold": gold}


def row_layout(row: dict) -> str:
    """``record`` | ``verl`` | ``upstream``: how a benchmark row is laid out (see the module docstring)."""
    if _is_record(row):
        return "record"
    if isinstance(row.get("prompt"), (list, tuple)) and isinstance(row.get("reward_model"), dict):
        return "verl"
    return "upstream"


def _verl_record(row: dict, i: int, name: str, kind: str) -> dict:
    """A verl-style row: the chat ``prompt`` as is (it carries its own instruction), ``ground_truth`` as gold.

    A system message is kept in front of the user turn (the evaluation renders one user turn).
    """
    if kind != "math":
        raise ValueError(f"verl-style rows carry no options or tests: not usable for a {kind} benchmark")
    messages = list(row["prompt"])
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if len(users) != 1:
        raise ValueError(f"verl prompt: expected one user message, found {len(users)}")
    system = [str(m.get("content", "")) for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    prompt = "\n\n".join([*system, str(users[0].get("content", ""))]).strip()
    gold = row["reward_model"].get("ground_truth")
    if isinstance(gold, (list, tuple)):  # some converters store a list of acceptable answers
        if len(gold) != 1:
            raise ValueError(f"reward_model.ground_truth holds {len(gold)} answers; expected one")
        gold = gold[0]
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
    rid = extra.get("index", extra.get("id", row.get("id")))
    return {"id": str(rid) if rid is not None else f"{name}-{i}", "prompt": prompt,
            "gold": "" if gold is None else str(gold).strip(), "kind": "math",
            "data_source": row.get("data_source")}


def _real_loader(name, normalize, hub_id, config, split, alt_splits=(), all_configs=False):
    def loader(path=None, **opts) -> tuple[list[dict], int]:
        where = str(path) if path is not None else f"{hub_id}[{config or ''}:{split}]"
        rows = (read_rows(path, config=None if all_configs else config, split=split,
                          tag_config="subject" if all_configs else None) if path is not None
                else _hub_load(hub_id, config, split, alt_splits, all_configs))
        records = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ValueError(f"{where}: row {i + 1}: expected an object")
            layout = row_layout(row)
            try:
                if layout == "record":
                    rec = dict(row)
                elif layout == "verl":
                    rec = _verl_record(row, i, name, BENCHMARKS[name].kind)
                else:
                    rec = normalize(row, i, **opts)
            except (KeyError, ValueError, TypeError) as exc:
                why = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # str(KeyError) adds quotes
                lacks = [k for k in REQUIRED_KEYS if k not in row]
                if "kind" in row and lacks:  # meant as a record (id, prompt, gold, kind): say what it lacks
                    why = f"a record without {', '.join(lacks)}"
                raise ValueError(f"{where}: row {i + 1}: {name} ({layout} layout): {why}") from None
            if rec is None:  # filtered out (e.g. MMLU-Redux items with an error_type)
                continue
            records.append({**_check_record(rec, f"{where}: row {i + 1}"), "source_row": i + 1})
        if not records:
            raise ValueError(f"{where}: no records")
        return records, len(rows)
    return loader


def _hub_load(hub_id, config, split, alt_splits, all_configs):
    if not all_configs:
        return hub_rows(hub_id, config, split, alt_splits)
    import datasets

    try:
        configs = datasets.get_dataset_config_names(hub_id)
    except Exception as exc:  # noqa: BLE001 - offline, gated, or no such dataset: one line, as hub_rows
        raise ValueError(f"could not list the configs of {hub_id} on the hub or in its cache ({type(exc).__name__}: "
                         f"{exc}); pass a local folder or file instead") from None
    rows = []
    for cfg in configs:
        for r in hub_rows(hub_id, cfg, split, alt_splits):
            # some v2.0 configs type these columns float64 (all null): keep them as strings
            for k in ("correct_answer", "source", "potential_reason"):
                if k in r and r[k] is not None:
                    r[k] = str(r[k])
            rows.append({**r, "subject": cfg})
    return rows


_REAL = [
    # name, normalizer, kind, hub id, config, split, alternative splits, all configs, options, official size, notes
    ("gsm8k", _gsm8k, "math", "openai/gsm8k", "main", "test", (), False, None, 1319, ""),
    ("math500", _math_like("math500"), "math", "HuggingFaceH4/MATH-500", None, "test", (), False, None, 500,
     ""),
    ("aime24", _math_like("aime24"), "math", "HuggingFaceH4/aime_2024", None, "train", (), False, None, 30,
     "also reads Maxwell-Jia/AIME_2024 (Problem/Answer) and zwhe99/aime90 (expected_answer) rows"),
    ("aime25", _math_like("aime25"), "math", "math-ai/aime25", None, "test", (), False, None, 30, ""),
    ("humaneval_plus", _humaneval_plus, "code", "evalplus/humanevalplus", None, "test", (), False, None, 164,
     ""),
    ("mbpp_plus", _mbpp_plus, "code", "evalplus/mbppplus", None, "test", ("train",), False, None, 378, ""),
    ("gpqa", _gpqa, "multiple_choice", "Idavidrein/gpqa", "gpqa_diamond", "train", (), False, (4, 4), 198,
     "gated; also the official release's gpqa_diamond.csv; choices shuffled with shuffle_seed (default 0), "
     "permutation stored per record"),
    ("mmlu_pro", _mmlu_pro, "multiple_choice", "TIGER-Lab/MMLU-Pro", None, "test", (), False, (3, 10), 12032,
     ""),
    ("mmlu_redux", _mmlu_redux, "multiple_choice", "edinburgh-dawg/mmlu-redux-2.0", None, "test",
     (), True, (4, 4), 5700, "all 57 subject configs; error_type == 'ok' only (redux_keep / redux_rekey)"),
    ("arc_challenge", _arc, "multiple_choice", "allenai/ai2_arc", "ARC-Challenge", "test", (),
     False, (3, 5), 1172, ""),
]

for (_name, _norm, _kind, _hub, _cfg, _split, _alt, _all, _opts, _size, _notes) in _REAL:
    register(_name, _real_loader(_name, _norm, _hub, _cfg, _split, _alt, _all),
             description=_notes, kind=_kind, hub_id=_hub, config=_cfg, split=_split,
             source={"alt_splits": list(_alt), "all_configs": _all}, options=_opts, official_size=_size,
             repeats_are_items=_name in ("mmlu_pro", "mmlu_redux"))


def benchmark_info(name: str) -> dict:
    """Provenance of a registered benchmark (for summaries)."""
    b = BENCHMARKS[name]
    return {"name": b.name, "kind": b.kind, "hub_id": b.hub_id, "config": b.config,
            "split": b.split, **b.source}


DUPLICATE_POLICIES = ("drop", "error")
# rows a benchmark's own rule may resolve (MMLU-Pro's official test split: one); more means the file is misread
MAX_GOLD_NOTES, MAX_GOLD_NOTES_FRACTION = 3, 0.001


def check_records(name: str, records: list[dict], where: str, duplicates: str = "drop",
                  rows_read: int | None = None) -> tuple[list[dict], dict]:
    """The checks every benchmark passes on load; returns the kept records and a report for the summary.

    * the same problem twice (same prompt, gold and tests) is dropped with a count (``duplicates="drop"``,
      one public AIME file holds 960 rows for 30 problems) or refused (``"error"``), except in a complete file
      (the official number of rows) of a set that itself holds it under two ids (``Benchmark.repeats_are_items``:
      MMLU-Pro, MMLU-Redux), which scores both; the same id twice is a duplicate everywhere, and the same id or
      prompt with a different gold is always an error;
    * every record needs a prompt, math and multiple choice a gold answer; multiple choice needs 2..10 options
      (the benchmark's own range where known: GPQA 4, ARC 3..5) and a gold letter among them;
    * the number of problems read (duplicates dropped) is compared with the official set's (MATH-500 500,
      AIME24 30, GPQA-Diamond 198, ...): a difference is a warning and stated in the report;
    * a record's ``gold_note`` (a source row whose fields disagree, resolved as the benchmark's own evaluation
      resolves it) is a warning and listed in the report, more than a few (``MAX_GOLD_NOTES``, or 0.1% of the
      rows) an error: the file's columns are misread; rows the loader filtered out are counted.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates: {duplicates!r} is not one of {', '.join(DUPLICATE_POLICIES)}")
    bench = BENCHMARKS.get(name)
    lo, hi = (bench.options if bench and bench.options else (2, len(LETTERS)))
    rows_read = rows_read if rows_read is not None else len(records)
    # the complete official file (its rows before filtering number the official set's) scores its repeats
    score_repeats = bench is not None and bench.repeats_are_items and rows_read == bench.official_size
    kept, by_id, by_prompt, dropped, repeats = [], {}, {}, 0, 0
    for rec in records:
        row = f"{where}: row {rec.get('source_row', '?')}"
        kind = rec["kind"]
        if kind != "code" and not rec["gold"].strip():
            raise ValueError(f"{row}: empty gold answer")
        if not rec["prompt"].strip():  # the model would be sampled on the template alone
            raise ValueError(f"{row}: empty prompt")
        if kind == "multiple_choice":
            n = len(rec["choices"])
            if not lo <= n <= hi:
                expected = f"{lo}" if lo == hi else f"{lo}..{hi}"
                raise ValueError(f"{row}: {n} options; {name} questions have {expected}")
            if rec["gold"] not in LETTERS[:n]:
                raise ValueError(f"{row}: gold {rec['gold']!r} is not one of the letters A..{LETTERS[n - 1]}")
        key = (rec["prompt"], rec["gold"], str(rec.get("tests", "")))
        first = by_id.get(rec["id"]) or by_prompt.get(rec["prompt"])
        if first is not None:
            first_key = (first["prompt"], first["gold"], str(first.get("tests", "")))
            same_id = first["id"] == rec["id"]
            what = "duplicate id" if same_id else "duplicate problem"
            if first_key != key:
                raise ValueError(f"{row}: {what} {rec['id']!r} with a different "
                                 f"{'prompt' if first['prompt'] != rec['prompt'] else 'gold answer or tests'} "
                                 f"than row {first.get('source_row', '?')}")
            if not same_id and score_repeats:
                repeats += 1
            elif duplicates == "error":
                raise ValueError(f"{row}: {what} {rec['id']!r} (same as row {first.get('source_row', '?')}); "
                                 "eval.duplicates: drop keeps the first")
            else:
                dropped += 1
                continue
        by_id[rec["id"]] = rec
        by_prompt.setdefault(rec["prompt"], rec)
        kept.append(rec)
    distinct_read = rows_read - dropped  # the official set's items read (its scored repeats included)
    official = bench.official_size if bench else None
    notes = [{"id": r["id"], "row": r.get("source_row"), "note": r["gold_note"]} for r in kept if r.get("gold_note")]
    if len(notes) > max(MAX_GOLD_NOTES, MAX_GOLD_NOTES_FRACTION * rows_read):  # a misaligned column, not a typo
        raise ValueError(f"{where}: {len(notes)} rows whose fields disagree, e.g. row {notes[0]['row']}: "
                         f"{notes[0]['note']}")
    report = {"rows_read": rows_read, "rows_filtered": rows_read - len(records), "duplicates_dropped": dropped,
              "repeats_scored": repeats, "problems": len(kept), "official_size": official,
              "size_matches_official": None if official is None else distinct_read == official, "gold_notes": notes}
    if dropped:
        log.warning("%s: %d duplicate problem(s) dropped, %d kept", where, dropped, len(kept))
    if repeats:
        log.info("%s: %d question(s) the official %s holds under two ids, each scored", where, repeats, name)
    for n in notes:
        log.warning("%s: row %s (%s): %s", where, n["row"], n["id"], n["note"])
    if official is not None and distinct_read != official:
        log.warning("%s: %d problems read, the official %s has %d", where, distinct_read, name, official)
    return kept, report


def load_benchmark_checked(name: str, path=None, limit: int | None = None, duplicates: str = "drop",
                           **options) -> tuple[list[dict], dict]:
    """Records of benchmark ``name`` (from ``path`` when given) after :func:`check_records`, and its report.

    ``limit`` keeps the first ``limit`` records (after the checks). ``options`` go to the loader:
    ``shuffle_seed`` (GPQA), ``redux_keep`` / ``redux_rekey`` (MMLU-Redux); loaders ignore options they
    do not use.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r} (known: {', '.join(sorted(BENCHMARKS))})")
    bench = BENCHMARKS[name]
    where = str(path) if path is not None else f"{bench.hub_id}[{bench.config or ''}:{bench.split}]"
    records, rows_read = bench.loader(path=path, **options)
    records, report = check_records(name, records, where, duplicates, rows_read)
    if limit is not None:
        records = records[:limit]
        report["limit"] = limit
    return records, report


def load_benchmark(name: str, path=None, limit: int | None = None, **options) -> list[dict]:
    """The records of :func:`load_benchmark_checked` (without its report)."""
    return load_benchmark_checked(name, path, limit, **options)[0]
