"""Answer-part selection and OpenMathInstruct-style ``\\boxed{}`` extraction.

Pure string code (no sympy): safe to run in the parent process.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_MAX_CHARS", "THINK_CLOSE", "answer_part", "last_boxed", "extract_answer"]

#: Characters of the answer part that are graded. The final answer sits at the END of a
#: response, so truncation keeps the last ``DEFAULT_MAX_CHARS`` characters. 4096 characters
#: is ~1k tokens: far more than the summary a reasoning model writes after ``</think>``,
#: and small enough that neither regex extraction nor IPC cost anything noticeable.
DEFAULT_MAX_CHARS = 4096

THINK_CLOSE = "</think>"


def answer_part(response: str, max_chars: int | None = DEFAULT_MAX_CHARS) -> str:
    """The part of ``response`` that is graded.

    * the text after the LAST ``</think>`` when present (otherwise the whole response);
    * truncated to its last ``max_chars`` characters (``None`` or ``<= 0`` = no truncation).

    Non-string input is coerced: ``None`` -> ``""``, anything else -> ``str(x)``.
    """
    if response is None:
        return ""
    if not isinstance(response, str):
        response = str(response)
    idx = response.rfind(THINK_CLOSE)
    if idx >= 0:
        response = response[idx + len(THINK_CLOSE):]
    if max_chars is not None and max_chars > 0 and len(response) > max_chars:
        response = response[-max_chars:]
    return response


_BOXED = "\\boxed"
_BOXED_OPEN = "\\boxed{"
_BRACES = re.compile(r"[{}]")


def last_boxed(text: str | None) -> str | None:
    """OpenMathInstruct ``extract_answer(text, extract_from_boxed=True)``.

    Rules (utils/openmathinst_utils.py in GIFT / NeMo-Skills):

    * ``None`` unless ``"\\boxed"`` occurs in the string;
    * start at the LAST ``"\\boxed"``; count ``{``/``}`` from there and stop where the depth
      first returns to 0 (a ``}`` before any ``{`` drives the depth negative, which never
      "returns to 0", exactly like the original counter);
    * the matched span must start with the literal ``\\boxed{`` and end with ``}``; the inside is
      returned. So ``\\boxed 5`` and ``\\boxed {5}`` (space forms) and unbalanced braces give ``None``.

    The ``\\fbox`` fallback of the original is unreachable there and is not reproduced.
    Linear time (regex scan over braces), safe on megabyte inputs.
    """
    if not text or _BOXED not in text:
        return None
    idx = text.rfind(_BOXED)
    depth = 0
    end = None
    for m in _BRACES.finditer(text, idx):
        if m.group() == "{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                end = m.start()
                break
    if end is None:
        return None
    span = text[idx:end + 1]
    if not span.startswith(_BOXED_OPEN) or not span.endswith("}"):
        return None
    return span[len(_BOXED_OPEN):-1]


def extract_answer(text: str | None, extract_from_boxed: bool = True,
                   extract_regex: str = r"The final answer is (.+)$") -> str | None:
    """OpenMathInstruct ``extract_answer``: boxed mode (default) or regex mode.

    Regex mode uses ``re.search`` without MULTILINE, so ``$`` only matches at the very end:
    the phrase must be on the last line.
    """
    if text is None:
        return None
    if not extract_from_boxed:
        m = re.search(extract_regex, text)
        return m.group(1) if m else None
    return last_boxed(text)
