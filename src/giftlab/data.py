"""DeepMath-schema problems: loading (tiny jsonl, hub id or local file), splitting, SFT tokenisation."""

from __future__ import annotations

import hashlib
import json
import random
from array import array
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from giftlab.cli import ConfigError
from giftlab.io import write_text_atomic
from giftlab.rowfiles import read_jsonl, read_rows  # noqa: F401  (re-exported: scripts read rows through data)

REQUIRED_COLUMNS = ("question", "final_answer")
#: The math instruction the evaluation appends to every math benchmark problem (DeepMath's / simpleRL's system
#: prompt, GIFT's eval lineage); ``data.instruction`` appends it to the training questions too.
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def with_instruction(question: str) -> str:
    """``question`` as the math benchmarks prompt it: the text, a blank line, :data:`MATH_INSTRUCTION`; an empty
    question is a ValueError (the model would be sampled on the instruction alone)."""
    if not question.strip():
        raise ValueError("empty question")
    return f"{question.strip()}\n\n{MATH_INSTRUCTION}"


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return write_text_atomic(path, text)


def looks_local(path: str) -> bool:
    """``data.path`` names a file or folder, not a hub dataset id (``owner/name``)."""
    return bool(Path(path).suffix) or path.startswith((".", "/", "~")) or path.count("/") != 1


def load_problems(path: str, solution_key: str) -> list[dict[str, Any]]:
    """DeepMath-schema rows from a local file or folder (any format :mod:`giftlab.rowfiles` reads: the downloaded
    dataset folder with its ``data/train-*.parquet`` shards, a parquet, jsonl, json or csv file) or, when online, a
    hub dataset id such as ``zwhe99/DeepMath-103K``."""
    local = Path(path)
    if local.exists():
        rows = read_rows(local, split="train")
    elif looks_local(path):
        raise ConfigError(f"data.path: no such file or folder: {path}")
    else:
        try:
            import datasets

            rows = list(datasets.load_dataset(path, split="train"))
        except Exception as exc:  # offline, missing, or gated: say which
            raise ConfigError(f"data.path: cannot load '{path}' as a local file or hub dataset "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not rows:
        raise ConfigError(f"data.path: {path} holds no rows")
    check_columns(rows, (*REQUIRED_COLUMNS, solution_key), source=path)
    return rows


def check_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], source: str) -> None:
    """Every row is an object whose ``columns`` are non-empty strings; errors name the 1-based row."""
    for i, row in enumerate(rows, 1):
        if not isinstance(row, Mapping):
            raise ValueError(f"{source}: row {i}: expected a JSON object, got {type(row).__name__}")
        for col in columns:
            value = row.get(col)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{source}: row {i}: column '{col}' holds {type(value).__name__} {value!r}, not text")
            if value is None or not value.strip():
                raise ValueError(f"{source}: row {i}: column '{col}' is missing or empty")


def read_problems(path: str | Path, columns: Sequence[str]) -> list[dict[str, Any]]:
    """A split file (``data/splits/*.jsonl``) for a training or analysis step: at least one row, each with
    non-empty string ``columns``, no question twice (the split rule writes each once: a repeat is an edit or a bad
    copy, and would train twice). Errors are one line naming the file (and the row)."""
    rows = read_jsonl(path)
    if not rows:
        raise ValueError(f"{path}: no rows")
    check_columns(rows, columns, source=str(path))
    if "question" in columns:
        first: dict[str, int] = {}
        for i, row in enumerate(rows, 1):
            seen = first.setdefault(row["question"].strip(), i)
            if seen != i:
                raise ValueError(f"{path}: row {i}: the same question as row {seen} (the split writes each once)")
    return rows


def split_problems(rows: Sequence[Mapping[str, Any]], sizes: Mapping[str, int], seed: int
                   ) -> dict[str, list[dict[str, Any]]]:
    """Disjoint, deterministic subsets (paper: 10k SFT / 10k RL / 1k validation).

    Rows are deduplicated by question text first so no question lands in two subsets.
    """
    unique: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        unique.setdefault(row["question"].strip(), row)
    pool = list(unique.values())
    need = sum(sizes.values())
    if need > len(pool):
        raise ConfigError(f"config error: data.split asks for {need} problems but the source has "
                          f"{len(pool)} distinct questions")
    random.Random(seed).shuffle(pool)
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = [dict(r) for r in pool[start:start + size]]
        start += size
    return out


# ---------------------------------------------------------------- SFT tokenisation

def render_prompt(tokenizer, question: str, chat_template: str | bool = "auto") -> str:
    """The prompt string every stage uses: the tokenizer's own chat template with one user turn.

    ``"auto"`` uses the template when the tokenizer has one (the tiny tokenizer and instruct models
    do; some base tokenizers do not) and the raw question otherwise; ``True`` requires it.
    """
    return render_conversation(tokenizer, [question], chat_template)


def render_conversation(tokenizer, turns: Sequence[str], chat_template: str | bool = "auto") -> str:
    """A conversation up to the next assistant turn: ``turns`` alternate user and assistant (user first and last),
    in the tokenizer's chat template (``chat_template`` as in :func:`render_prompt`), or without one the turns
    joined by blank lines. One turn is :func:`render_prompt`'s prompt."""
    if len(turns) % 2 != 1:
        raise ValueError(f"a conversation to answer ends with a user turn: got {len(turns)} turns")
    has = getattr(tokenizer, "chat_template", None) is not None
    if chat_template == "auto":
        chat_template = has
    if not chat_template:
        return "\n\n".join(turns)
    if not has:
        raise ValueError("chat_template=True but the tokenizer has no chat template")
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i, text in enumerate(turns)]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Llama 3's template writes <|begin_of_text|> and its tokenizer prepends it again when the prompt is encoded
    # with special tokens (as SFT, evaluation and TRL all do): keep one.
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos) and encoding_adds_bos(tokenizer):
        text = text[len(bos):]
    return text


_TURN_PROBE = "GIFTLABTURNPROBE"


def turn_end_ids(tokenizer) -> list[int]:
    """The id of the special token that closes an assistant turn in the tokenizer's chat template, when it is not
    the tokenizer's EOS (else ``[]``; also without a template, or when the turn ends in plain text).

    A base model's EOS is its end of document (Qwen2.5's ``<|endoftext|>``, Llama 3.1's ``<|end_of_text|>``); its
    template ends a turn with another token (``<|im_end|>``, ``<|eot_id|>``). A base model prompted in the template
    (Direct RL, LUFFY and ReLIFT start from it) ends its answer with that token: generation that stops on EOS alone
    runs on past it into turns of its own making, until EOS or the token limit, and the last ``\\boxed{}`` graded is
    then the made-up turns'. Every generator adds this id to its stop ids (:mod:`giftlab.evaluation.generation`,
    :func:`giftlab.training.grpo.train_grpo`)."""
    if getattr(tokenizer, "chat_template", None) is None:
        return []
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "x"},
                                              {"role": "assistant", "content": _TURN_PROBE}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that refuses this conversation: nothing to add
        return []
    if not isinstance(text, str) or _TURN_PROBE not in text:
        return []
    tail = text[text.rindex(_TURN_PROBE) + len(_TURN_PROBE):]
    specials = tokenizer.get_added_vocab()
    hits = [t for t in specials if t and tail.startswith(t)]
    if not hits:
        return []
    token_id = specials[max(hits, key=len)]
    return [] if token_id == tokenizer.eos_token_id else [int(token_id)]


def encoding_adds_bos(tokenizer) -> bool:
    """Whether ``tokenizer(text)`` (special tokens on) starts with the BOS token by itself."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    return bos_id is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos_id]


def tokenize_sft_example(tokenizer, question: str, solution: str, max_length: int) -> dict[str, list[int]]:
    """Prompt (masked) + solution + EOS (trained), right-truncated to ``max_length``.

    Both parts are tokenised without special tokens except the BOS the prompt's template or
    post-processor adds, so the model sees exactly what generation will feed it.
    """
    prompt_ids = tokenizer(render_prompt(tokenizer, question), add_special_tokens=True)["input_ids"]
    answer_ids = tokenizer(solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def example_digest(example: Mapping[str, Sequence[int]]) -> bytes:
    """sha256 of one tokenised SFT example (its ``input_ids`` and ``labels``): prompt, template and truncation all
    show in it. A reference cache records the digest of its rows (:func:`tokens_sha256`), and a run reading it
    compares its own, so a cache of another tokenisation of the same split is refused."""
    digest = hashlib.sha256()
    for key in ("input_ids", "labels"):
        values = array("q", example[key])
        digest.update(len(values).to_bytes(8, "little"))
        digest.update(values.tobytes())
    return digest.digest()


def tokens_sha256(digests: Iterable[bytes]) -> str:
    """One hex digest over rows' :func:`example_digest` values, in row order."""
    return hashlib.sha256(b"".join(digests)).hexdigest()
