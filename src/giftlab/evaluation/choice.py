"""Multiple choice: prompt building (incl. GPQA's seeded shuffle) and letter extraction.

Prompt (DeepMath ``uni_eval.py`` format, GIFT's evaluation lineage)::

    {question}


    (A) ...
    (B) ...

    Please write your final answer in the form of \\boxed{A}, \\boxed{B}, ... or \\boxed{D}

Extraction (:func:`extract_letter`), on the text after the last ``</think>`` (last 4,000
characters), first rule that yields a letter wins:

1. ``\\boxed{X}`` (also ``\\boxed{(X)}``, ``\\boxed{\\text{X}}``, ``\\boxed{\\mathrm{X}}``,
   ``\\boxed{X) text}``): the last box; if the boxes name two different letters the answer is ambiguous -> None;
2. ``answer is (X)`` / ``answer is X`` (the last one; lm-eval/TIGER MMLU-Pro regex);
3. ``Answer: X`` / ``ANSWER: $X`` / ``**Answer:** (X)`` (the last one; simple-evals);

where X must be a valid letter for this question (``A``..``letters[n-1]``) and must stand
alone (``Answer: Apple`` is not ``A``). A hedge such as ``Answer: A or B`` or ``\\boxed{A or B}`` is None.
"""

from __future__ import annotations

import random
import re
import string
from typing import Sequence

from giftlab.rewards.extract import answer_part

__all__ = ["LETTERS", "format_mc_prompt", "shuffle_choices", "extract_letter"]

LETTERS = string.ascii_uppercase[:10]  # MMLU-Pro has up to 10 options (A..J)
MAX_CHARS = 4000


def format_mc_prompt(question: str, choices: Sequence[str]) -> str:
    if not 2 <= len(choices) <= len(LETTERS):
        raise ValueError(f"need 2..{len(LETTERS)} choices, got {len(choices)}")
    letters = LETTERS[:len(choices)]
    options = "\n".join(f"({L}) {str(c).strip()}" for L, c in zip(letters, choices))
    boxes = ", ".join(f"\\boxed{{{L}}}" for L in letters[:-1])
    return (f"{str(question).strip()}\n\n\n{options}\n\n"
            f"Please write your final answer in the form of {boxes} or \\boxed{{{letters[-1]}}}")


def shuffle_choices(choices: Sequence[str], seed: int, key: str) -> list[int]:
    """A permutation ``perm`` (new position i shows ``choices[perm[i]]``), fixed by seed + key."""
    perm = list(range(len(choices)))
    random.Random(f"{seed}:{key}").shuffle(perm)
    return perm


_BOX = re.compile(r"\\boxed\s*\{")
_SEP = r"[\s\*\$\(\[\{]*(?:\\text(?:bf)?\{\s*)?[\(\[]?"
_END = r"(?![A-Za-z0-9])"
_ANSWER_IS = re.compile(r"answer\s+is\s*:?" + _SEP + r"([A-J])" + _END, re.I)
_ANSWER_COLON = re.compile(r"answer\s*[:：]" + _SEP + r"([A-J])" + _END, re.I)
_HEDGE = re.compile(r"^[\s\*\$\)\]\}.]*(?:or|and|/|,|\\?&)\s*[\(\[]?([A-J])" + _END)


def _box_contents(text: str) -> list[str]:
    out = []
    for m in _BOX.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end():i - 1])
    return out


def _box_letter(content: str, valid: str) -> str | None:
    c = re.sub(r"\\(?:text(?:bf|rm)?|math(?:rm|bf))\s*\{([^{}]*)\}", r"\1", content).strip()
    c = c.strip("$ *")
    m = re.fullmatch(r"[\(\[]?([A-J])[\)\]]?(?:[\s.:)\]].*)?", c, re.S)
    # a hedge inside one box ("B or D", "B \text{ and } D") names no single letter, as outside a box
    if m and m.group(1) in valid and not _HEDGE.match(c[m.end(1):]):
        return m.group(1)
    return None


def _case_ok(m: re.Match) -> bool:
    # the letter itself must be upper case ("the answer is a number" is not "A")
    return m.group(1).isupper()


def extract_letter(response: str | None, n_choices: int = 4) -> str | None:
    """The chosen letter (``A``..) or None; see the module docstring for the rules."""
    if not response:
        return None
    text = answer_part(response, MAX_CHARS)
    valid = LETTERS[:max(1, min(int(n_choices), len(LETTERS)))]

    boxed = [_box_letter(c, valid) for c in _box_contents(text)]
    boxed = [b for b in boxed if b is not None]
    if boxed:
        return boxed[-1] if len(set(boxed)) == 1 else None

    for pattern in (_ANSWER_IS, _ANSWER_COLON):
        hits = [m for m in pattern.finditer(text) if _case_ok(m) and m.group(1) in valid]
        if hits:
            last = hits[-1]
            if _HEDGE.match(text[last.end():last.end() + 20]):
                return None
            return last.group(1)
    return None
