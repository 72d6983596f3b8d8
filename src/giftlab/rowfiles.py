"""Rows of a local data file or dataset folder, in the formats public datasets are distributed in.

One reader per file format, chosen by the file's content (its first bytes), not by its name:

* parquet (``PAR1`` magic): HF hub datasets' shards, verl-style RL data;
* gzip (``1f 8b``): decompressed, then read as below (EvalPlus ships ``*.jsonl.gz``);
* JSON text starting with ``[``: a list of objects; starting with ``{``: JSON Lines (one object per line);
* anything else: CSV with a header row (the official GPQA release, ``gpqa_diamond.csv``).

A folder is a dataset: either ``datasets``' ``save_to_disk`` output (``state.json`` / ``dataset_dict.json``,
read with ``datasets.load_from_disk``) or a downloaded dataset repository (``hf download --repo-type dataset
... --local-dir``; ``README.md`` + data files such as ``main/test-00000-of-00001.parquet``), whose data files are
the ones its dataset card's ``configs:`` names for the requested config and split, as ``datasets`` reads them, or
else picked by their paths (:func:`dataset_folder_files`). A repository may hold ``save_to_disk``
folders itself, one per config (``edinburgh-dawg/mmlu-redux-2.0``: ``anatomy/data-00000-of-00001.arrow`` beside
its ``state.json`` and ``dataset_info.json``): each is read with ``load_from_disk``, and the JSON files
``save_to_disk`` writes are never read as rows.

Errors are one line naming the file (and the 1-based row where there is one).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

#: File names a data file may have (a folder's data files are found by these; files themselves are sniffed).
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".jsonl.gz", ".json.gz", ".csv.gz")
#: A folder holding one of these is ``save_to_disk`` output (a ``Dataset`` / a ``DatasetDict``).
SAVED_DATASET_MARKERS = ("state.json", "dataset_dict.json")
#: Metadata that ``save_to_disk`` and the hub write beside the data: never rows.
METADATA_FILES = (*SAVED_DATASET_MARKERS, "dataset_info.json", "dataset_infos.json")
_SPLIT_NAMES = ("train", "test", "validation", "valid", "val", "dev")


class RowFileError(ValueError):
    """A data file or folder that cannot be read as rows; the message is one line naming it."""


def read_rows(path: str | Path, *, config: str | None = None, split: str | None = None,
              tag_config: str | None = None) -> list[dict[str, Any]]:
    """Rows (dicts) of a local file or dataset folder.

    For a folder, ``config`` / ``split`` choose among its data files (e.g. GSM8K's ``main`` / ``test``);
    ``tag_config`` names a key that receives each row's config folder (MMLU-Redux: ``subject``) when every
    config of the folder is read (``config=None``).
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path, config, split, tag_config)
    if not path.is_file():
        raise FileNotFoundError(f"missing input file: {path}")
    return read_file_rows(path)


def read_file_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of one file, its format sniffed from its content."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == b"PAR1" or path.name.lower().endswith(".parquet"):  # a named parquet file must be one
        return _read_parquet(path)
    if head[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as exc:
            raise RowFileError(f"{path}: not a readable gzip file ({exc})") from None
        return _read_text(path, data)
    return _read_text(path, path.read_bytes())


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # a truncated parquet file: name it, one line
        raise RowFileError(f"{path}: not a readable parquet file ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200]})") from None


def _read_text(path: Path, data: bytes) -> list[dict[str, Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RowFileError(f"{path}: not UTF-8 text, parquet or gzip (byte {exc.start})") from None
    first = text.lstrip()[:1]
    if not first:
        raise RowFileError(f"{path}: empty file")
    if first == "[":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RowFileError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if not all(isinstance(r, dict) for r in rows):
            raise RowFileError(f"{path}: expected a JSON list of objects")
        return rows
    if first == "{" or path.name.endswith((".jsonl", ".jsonl.gz", ".json", ".ndjson")):
        # (named JSON: a first row that does not parse is a JSON error, not a CSV header) rows end at "\n" only:
        # str.splitlines() also splits at U+2028 and other separators that JSON strings may hold unescaped (public
        # GPQA copies do)
        return _jsonl_rows(path, text.split("\n"))
    return _read_csv(path, text)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file, read line by line (split files, samples, corpora); one line per bad row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing input file: {path}")
    with open(path, "rb") as fh:  # decoded line by line: a byte that is not UTF-8 is named with its row
        return _jsonl_rows(path, fh)


def _jsonl_rows(path: Path, lines) -> list[dict[str, Any]]:
    rows = []
    for lineno, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RowFileError(f"{path}: row {lineno}: not UTF-8 text (byte 0x{line[exc.start]:02x} at column "
                                   f"{exc.start + 1})") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RowFileError(f"{path}: row {lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise RowFileError(f"{path}: row {lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _read_csv(path: Path, text: str) -> list[dict[str, Any]]:
    # strict: a file cut inside a quoted field (GPQA's are multi-line) is an error, not a record holding the rest
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    rows: list[dict[str, Any]] = []
    try:
        header = reader.fieldnames or []
        if len(header) < 2:
            raise RowFileError(f"{path}: not parquet, gzip, JSON, JSON Lines or a CSV with a header row")
        _csv_rows(path, reader, header, rows)
    except csv.Error as exc:
        raise RowFileError(f"{path}: row {len(rows) + 1}: not valid CSV ({exc}; a truncated file?)") from None
    return rows


def _csv_rows(path: Path, reader: csv.DictReader, header: list[str], rows: list[dict[str, Any]]) -> None:
    for i, row in enumerate(reader, 1):
        if None in row:  # more fields than the header has
            raise RowFileError(f"{path}: row {i}: {len(header) + len(row[None])} fields, the header has "
                               f"{len(header)}")
        if None in row.values():  # fewer (DictReader fills the missing ones with None): a file cut short
            raise RowFileError(f"{path}: row {i}: {sum(v is not None for v in row.values())} fields, the header "
                               f"has {len(header)} (a truncated file?)")
        rows.append(row)


def find_data(directory: str | Path, name: str) -> Path | None:
    """``<directory>/<name>`` as a data file with any of :data:`DATA_SUFFIXES` or as a dataset folder; None when
    there is none. Two candidates (``math500.jsonl`` and ``math500.parquet``) are an error: which one a run read
    must never depend on a search order."""
    directory = Path(directory)
    found = [directory / f"{name}{suffix}" for suffix in DATA_SUFFIXES if (directory / f"{name}{suffix}").is_file()]
    if (directory / name).is_dir():
        found.append(directory / name)
    if len(found) > 1:
        raise RowFileError(f"{directory}: {' and '.join(p.name for p in found)} are both benchmark {name!r}: "
                           "keep one")
    return found[0] if found else None


# ------------------------------------------------------------------------------------------- folders

def _read_folder(path: Path, config, split, tag_config) -> list[dict[str, Any]]:
    if _is_saved_dataset(path):
        return _load_from_disk(path, split)
    rows = []
    for entry in dataset_folder_files(path, config, split):
        part = _load_from_disk(entry, split) if entry.is_dir() else read_file_rows(entry)
        if tag_config and config is None:
            rel = entry.relative_to(path).parts
            group = rel[0] if entry.is_dir() or len(rel) > 1 else None
            part = [{**r, tag_config: r.get(tag_config) or group} for r in part]
        rows.extend(part)
    return rows


def _is_saved_dataset(path: Path) -> bool:
    return any((path / marker).is_file() for marker in SAVED_DATASET_MARKERS)


def _load_from_disk(path: Path, split) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split is None and len(ds) == 1:
                split = next(iter(ds))
            if split not in ds:
                raise RowFileError(f"{path}: a DatasetDict without split {split!r} (it has {', '.join(ds)})")
            ds = ds[split]
        return list(ds)
    except RowFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken save_to_disk folder: one line naming its broken file
        raise RowFileError(f"{_broken_file(path)}: not a readable save_to_disk dataset ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def _broken_file(path: Path) -> Path:
    """The file of a ``save_to_disk`` folder that ``load_from_disk`` failed on: the first JSON that does not
    parse, else the first ``.arrow`` shard that pyarrow cannot read, else the folder itself."""
    import pyarrow as pa

    files = sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file.name in METADATA_FILES:
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                return file
    for file in files:
        if file.suffix == ".arrow":
            try:
                with pa.memory_map(str(file)) as source:
                    pa.ipc.open_stream(source).read_all()
            except (pa.ArrowException, OSError):
                return file
    return path


def dataset_folder_files(path: Path, config: str | None = None, split: str | None = None) -> list[Path]:
    """The data of a downloaded dataset folder for ``config`` and ``split``, in name order: its data files and
    the ``save_to_disk`` folders in it (a folder holding ``state.json`` or ``dataset_dict.json``, one entry read
    with ``load_from_disk``; its ``.arrow`` shards and JSON metadata are never data files themselves).

    Hidden folders (``.cache``, ``.git``) are skipped, and so are the metadata files of :data:`METADATA_FILES`. A
    file belongs to a config when a folder on its path, or its name up to the first ``-``/``.``/``_``, is the
    config (``main/test-0.parquet``, ``gpqa_diamond.csv``, a ``save_to_disk`` folder ``anatomy/``); to a split
    when a folder or its name starts with the split (``test-00000-of-00001.parquet``, ``test.jsonl``,
    ``data/test/...``). When no file names a split, all files are read; when files name other splits only, that
    is an error. An ``.arrow`` shard outside a ``save_to_disk`` folder (its ``state.json`` lost) is an error
    naming it.
    """
    visible = [p for p in path.rglob("*") if not any(part.startswith(".") for part in p.relative_to(path).parts)]
    saved = [p for p in visible if p.is_dir() and _is_saved_dataset(p)]
    candidates = sorted([*saved, *(p for p in visible if p.is_file() and p.name not in METADATA_FILES
                                   and p.name.lower().endswith((*DATA_SUFFIXES, ".arrow")))])
    files = [p for p in candidates if not any(s in p.parents for s in saved)]  # a saved folder is read whole
    if not files:
        raise RowFileError(f"{path}: no data files ({', '.join(DATA_SUFFIXES)}) or save_to_disk folders "
                           "in this folder")
    stray = [f for f in files if f.suffix == ".arrow"]
    if stray:
        raise RowFileError(f"{stray[0]}: an .arrow shard outside a save_to_disk folder (no state.json beside it)")
    patterns = card_data_files(path, config, split)
    if patterns is not None:  # the dataset card says which files are data: resolved as `datasets` resolves them
        from datasets.data_files import resolve_pattern

        resolved: set[Path] = set()
        for pattern in patterns:
            try:
                resolved |= {Path(p).resolve() for p in resolve_pattern(pattern, str(path))}
            except FileNotFoundError:
                continue
        named = [f for f in files if f.resolve() in resolved  # a save_to_disk folder: named by a file inside it
                 or (f.is_dir() and any(f.resolve() in r.parents for r in resolved))]
        if not named:
            raise RowFileError(f"{path / 'README.md'}: its configs name {', '.join(patterns)} for "
                               f"{config or 'the default config'}, split {split or 'any'}: no such file here")
        return named
    if config:
        matching = [f for f in files if _names_config(f.relative_to(path), config)]
        if matching:
            files = matching
    if split:
        named = {f: _split_of(f.relative_to(path)) for f in files}
        if any(named.values()):
            chosen = [f for f, s in named.items() if s == _canonical_split(split)]
            if not chosen:
                found = sorted({s for s in named.values() if s})
                raise RowFileError(f"{path}: no data file for split {split!r} (files name {', '.join(found)})")
            files = chosen
    return files


def card_data_files(path: Path, config: str | None = None, split: str | None = None) -> list[str] | None:
    """The file patterns a downloaded folder's dataset card gives for ``config`` and ``split``: the ``configs:`` of
    README.md's YAML header (``- config_name: default / data_files: - split: test / path: data/test-*``), which
    is how ``datasets`` tells data from other files; None when the card names none (or none for ``config``).
    A header that does not parse is an error naming the card and its line, as ``datasets`` refuses the card too
    (guessing the data files by their paths could read the wrong ones)."""
    import yaml

    card = path / "README.md"
    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    header = re.match(r"---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.S)
    try:
        meta = yaml.safe_load(header.group(1)) if header else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)  # 0-based within the header, which starts on the card's line 2
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise RowFileError(f"{card}: its YAML header does not parse{where} ({problem}): fix the header, which "
                           "says which files are data") from None
    configs = meta.get("configs") if isinstance(meta, dict) else None
    if not isinstance(configs, list):
        return None
    entries = [c for c in configs if isinstance(c, dict)]
    wanted = [c for c in entries if c.get("config_name") == config] if config else (
        # no config asked: the card's default, or its only one (of several, none: e.g. MMLU-Redux's subjects,
        # which the loader reads all of)
        [c for c in entries if c.get("default") or c.get("config_name") == "default"]
        or (entries if len(entries) == 1 else []))
    if not wanted or "data_files" not in wanted[0]:
        return None
    data_files = wanted[0]["data_files"]
    if isinstance(data_files, (str, dict)):
        data_files = [data_files]
    patterns = []
    for item in data_files:
        item_split, paths = ("train", item) if isinstance(item, str) else (item.get("split", "train"), item.get("path"))
        if split is None or _canonical_split(str(item_split)) == _canonical_split(split):
            patterns += [paths] if isinstance(paths, str) else list(paths or [])
    return patterns or None


def _names_config(rel: Path, config: str) -> bool:
    stem = rel.name.split(".")[0]
    return config in rel.parts[:-1] or stem == config or stem.startswith(f"{config}-")


def _canonical_split(name: str) -> str:
    name = name.lower()
    return {"valid": "validation", "val": "validation", "dev": "validation"}.get(name, name)


def _split_of(rel: Path) -> str | None:
    for part in (*rel.parts[:-1], rel.name):
        token = re.split(r"[-._]", part.lower(), maxsplit=1)[0]
        if token in _SPLIT_NAMES:
            return _canonical_split(token)
    return None
