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
split=...)``; the local HF cache serves it offline) or, when ``path`` is given, from a local
``.jsonl``/``.json``/``.parquet`` file holding rows in the upstream field names (or rows already
in the record schema). The tiny world's ``tiny_*`` sets are local-jsonl only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from giftlab.data import read_rows, with_instruction
from typing import Any, Callable

from giftlab.evaluation.choice import LETTERS, format_mc_prompt, shuffle_choices

REQUIRED_KEYS = ("id", "prompt", "gold", "kind")
KINDS = ("math", "multiple_choice", "code")

Loader = Callable[..., list[dict]]


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


BENCHMARKS: dict[str, Benchmark] = {}


def register(name: str, loader: Loader, needs_path: bool = False, description: str = "",
             **meta) -> None:
    if name in BENCHMARKS:
        raise ValueError(f"benchmark {name!r} is already registered")
    BENCHMARKS[name] = Benchmark(name, loader, needs_path, description, **meta)


def load_jsonl_records(path, kinds: tuple[str, ...] = ("math",)) -> list[dict]:
    """Records from a local jsonl; each line needs ``id, prompt, gold, kind`` (in ``kinds``).

    Errors are one line naming the file and the 1-based row. ``gold`` is kept as a string.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    records, seen = [], set()
    with open(path) as fh:
        for row, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: row {row}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}: row {row}: expected a JSON object")
            missing = [k for k in REQUIRED_KEYS if k not in rec]
            if missing:
                raise ValueError(f"{path}: row {row}: missing key(s) {', '.join(missing)}")
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
                            "gold": str(rec["gold"])})
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def _local_jsonl(kinds: tuple[str, ...]) -> Loader:
    def load(path=None, **_) -> list[dict]:
        if path is None:
            raise ValueError("this benchmark is read from a local jsonl: pass its path")
        return load_jsonl_records(path, kinds)
    return load


# The tiny world's analogues (giftlab.tinyworld.make_benchmarks writes them).
for _name, _kind, _what in (
        ("tiny_id", "math", "arithmetic chains like the SFT/RL problems (held out)"),
        ("tiny_ood", "math", "longer chains than any SFT/RL problem"),
        ("tiny_family", "math", "chains with division, an op only the pretraining corpus has"),
        ("tiny_mc", "multiple_choice", "in-distribution chains as multiple-choice items (which range holds the result)")):
    register(_name, _local_jsonl((_kind,)), needs_path=True, kind=_kind,
             description=f"tiny world: {_what} (data/tiny/benchmarks/{_name}.jsonl)")


# --------------------------------------------------------------------------- real benchmarks

HUMANEVAL_TEMPLATE = ("Complete the following Python function. Reply with the complete function "
                      "(with any imports it needs) in a single ```python code block.\n\n"
                      "```python\n{prompt}```")
MBPP_TEMPLATE = ("{text}\nYour code should pass these tests:\n\n{tests}\n\n"
                 "Write the Python function in a single ```python code block.")


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
            errors.append(f"split {sp!r}: {type(exc).__name__}: {exc}")
    raise ValueError(f"could not load {hub_id} (config {config!r}) from the hub or its cache "
                     f"({'; '.join(errors)}); pass a local jsonl/parquet path instead")


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
    def norm(row, i, **_):
        problem = str(_get(row, "problem", "Problem", "question"))
        gold = _get(row, "answer", "Answer", "expected_answer", "final_answer")
        rid = _get(row, "unique_id", "id", "ID", default=f"{prefix}-{i}")
        return {"id": str(rid), "prompt": with_instruction(problem),
                "gold": str(gold).strip(), "kind": "math"}
    return norm


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


def _mmlu_pro(row, i, **_):
    options = list(_get(row, "options"))
    if "answer_index" in row and row["answer_index"] is not None:
        idx = int(row["answer_index"])
    else:
        idx = LETTERS.index(str(_get(row, "answer")).strip())
    if "answer" in row and row["answer"] is not None and str(row["answer"]).strip() != LETTERS[idx]:
        raise ValueError(f"answer {row['answer']!r} disagrees with answer_index {idx}")
    return _mc_record(_get(row, "question_id", default=f"mmlu_pro-{i}"), _get(row, "question"),
                      options, idx, category=row.get("category"))


def _redux_index(value) -> int | None:
    if value is None:
        return None
    v = str(value).strip()
    if v in ("A", "B", "C", "D"):
        return "ABCD".index(v)
    if v.isdigit() and 0 <= int(v) <= 3:
        return int(v)
    return None


def _mmlu_redux(row, i, redux_keep=("ok",), redux_rekey: bool = False, **_):
    etype = str(row.get("error_type", "ok")).strip()
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
    return _mc_record(rid, _get(row, "question"), list(_get(row, "choices")), idx,
                      subject=subject, error_type=etype)


def _arc(row, i, **_):
    choices = _get(row, "choices")
    texts, labels = list(choices["text"]), [str(x).strip() for x in choices["label"]]
    key = str(_get(row, "answerKey")).strip()
    if key not in labels:
        raise ValueError(f"answerKey {key!r} not among labels {labels}")
    return _mc_record(_get(row, "id", default=f"arc-{i}"), _get(row, "question"), texts,
                      labels.index(key))


def _import_lines(code: str) -> str:
    return "\n".join(line for line in code.splitlines()
                     if re.match(r"\s*(import|from)\s+\S", line) and not line.startswith(" "))


def _humaneval_plus(row, i, **_):
    prompt, entry = str(_get(row, "prompt")), str(_get(row, "entry_point"))
    test = str(_get(row, "test"))
    return {"id": str(_get(row, "task_id", default=f"humaneval_plus-{i}")),
            "prompt": HUMANEVAL_TEMPLATE.format(prompt=prompt), "gold": "", "kind": "code",
            "tests": f"{test}\n\ncheck({entry})\n", "entry_point": entry,
            "setup": _import_lines(prompt), "prefix": prompt}


def _mbpp_plus(row, i, **_):
    test_list = [str(t) for t in (_get(row, "test_list", default=[]) or [])]
    tests = str(_get(row, "test", default="") or "") or "\n".join(test_list)
    if not tests.strip():
        raise ValueError("no tests (fields test / test_list empty)")
    entry = None
    for src in (*test_list, str(row.get("code", ""))):
        m = re.search(r"assert\s+(?:not\s+)?\(?\s*(?:math\.isclose\(|set\()?\s*([A-Za-z_]\w*)\s*\(",
                      src) or re.search(r"^def\s+([A-Za-z_]\w*)\s*\(", src, re.M)
        if m:
            entry = m.group(1)
            break
    text = str(_get(row, "prompt", "text")).strip()
    return {"id": f"Mbpp/{_get(row, 'task_id')}" if "task_id" in row else f"mbpp_plus-{i}",
            "prompt": MBPP_TEMPLATE.format(text=text, tests="\n".join(test_list[:3])),
            "gold": "", "kind": "code", "tests": tests + "\n", "entry_point": entry,
            "setup": "\n".join(str(x) for x in (row.get("test_imports") or [])), "prefix": ""}


def _check_record(rec: dict, where: str) -> dict:
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    if rec["kind"] not in KINDS:
        raise ValueError(f"{where}: kind {rec['kind']!r} not supported")
    if rec["kind"] == "multiple_choice" and not rec.get("choices"):
        raise ValueError(f"{where}: multiple_choice record without choices")
    if rec["kind"] == "code" and not rec.get("tests"):
        raise ValueError(f"{where}: code record without tests")
    return {**rec, "id": str(rec["id"]), "prompt": str(rec["prompt"]), "gold": str(rec["gold"])}


def _hub_load(hub_id, config, split, alt_splits, all_configs):
    if not all_configs:
        return hub_rows(hub_id, config, split, alt_splits)
    import datasets

    rows = []
    for cfg in datasets.get_dataset_config_names(hub_id):
        for r in hub_rows(hub_id, cfg, split, alt_splits):
            # some v2.0 configs type these columns float64 (all null): keep them as strings
            for k in ("correct_answer", "source", "potential_reason"):
                if k in r and r[k] is not None:
                    r[k] = str(r[k])
            rows.append({**r, "subject": cfg})
    return rows


def _real_loader(name, normalize, hub_id, config, split, alt_splits=(), all_configs=False):
    def loader(path=None, **opts) -> list[dict]:
        where = str(path) if path is not None else f"{hub_id}[{config or ''}:{split}]"
        rows = (read_rows(path) if path is not None
                else _hub_load(hub_id, config, split, alt_splits, all_configs))
        records, seen = [], set()
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ValueError(f"{where}: row {i + 1}: expected an object")
            try:
                rec = dict(row) if _is_record(row) else normalize(row, i, **opts)
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{where}: row {i + 1}: {name}: {exc}") from None
            if rec is None:  # filtered out (e.g. MMLU-Redux items with an error_type)
                continue
            rec = _check_record(rec, f"{where}: row {i + 1}")
            if rec["id"] in seen:
                raise ValueError(f"{where}: row {i + 1}: duplicate id {rec['id']!r}")
            seen.add(rec["id"])
            records.append(rec)
        if not records:
            raise ValueError(f"{where}: no records")
        return records
    return loader


_REAL = [
    # name, normalizer, kind, hub id, config, split, alternative splits, all configs, notes
    ("gsm8k", _gsm8k, "math", "openai/gsm8k", "main", "test", (), False, ""),
    ("math500", _math_like("math500"), "math", "HuggingFaceH4/MATH-500", None, "test", (), False,
     ""),
    ("aime24", _math_like("aime24"), "math", "HuggingFaceH4/aime_2024", None, "train", (), False,
     "also reads Maxwell-Jia/AIME_2024 (Problem/Answer) and zwhe99/aime90 (expected_answer) rows"),
    ("aime25", _math_like("aime25"), "math", "math-ai/aime25", None, "test", (), False, ""),
    ("humaneval_plus", _humaneval_plus, "code", "evalplus/humanevalplus", None, "test", (), False,
     ""),
    ("mbpp_plus", _mbpp_plus, "code", "evalplus/mbppplus", None, "test", ("train",), False, ""),
    ("gpqa", _gpqa, "multiple_choice", "Idavidrein/gpqa", "gpqa_diamond", "train", (), False,
     "gated; choices shuffled with shuffle_seed (default 0), permutation stored per record"),
    ("mmlu_pro", _mmlu_pro, "multiple_choice", "TIGER-Lab/MMLU-Pro", None, "test", (), False, ""),
    ("mmlu_redux", _mmlu_redux, "multiple_choice", "edinburgh-dawg/mmlu-redux-2.0", None, "test",
     (), True, "all 57 subject configs; error_type == 'ok' only (redux_keep / redux_rekey)"),
    ("arc_challenge", _arc, "multiple_choice", "allenai/ai2_arc", "ARC-Challenge", "test", (),
     False, ""),
]

for (_name, _norm, _kind, _hub, _cfg, _split, _alt, _all, _notes) in _REAL:
    register(_name, _real_loader(_name, _norm, _hub, _cfg, _split, _alt, _all),
             description=_notes, kind=_kind, hub_id=_hub, config=_cfg, split=_split,
             source={"alt_splits": list(_alt), "all_configs": _all})


def benchmark_info(name: str) -> dict:
    """Provenance of a registered benchmark (for summaries)."""
    b = BENCHMARKS[name]
    return {"name": b.name, "kind": b.kind, "hub_id": b.hub_id, "config": b.config,
            "split": b.split, **b.source}


def load_benchmark(name: str, path=None, limit: int | None = None, **options) -> list[dict]:
    """Records of benchmark ``name`` (from ``path`` when given); the first ``limit`` when set.

    ``options`` go to the loader: ``shuffle_seed`` (GPQA), ``redux_keep`` / ``redux_rekey``
    (MMLU-Redux); loaders ignore options they do not use.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r} (known: {', '.join(sorted(BENCHMARKS))})")
    records = BENCHMARKS[name].loader(path=path, **options)
    return records[:limit] if limit is not None else records
