"""The prompts of the code benchmarks (HumanEval+, MBPP+), shared by both row formats (HF hub rows and the EvalPlus
release files), and the import lines a solution is run with."""

from __future__ import annotations

import re

HUMANEVAL_TEMPLATE = ("Complete the following Python function. Reply with the complete function "
                      "(with any imports it needs) in a single ```python code block.\n\n"
                      "```python\n{prompt}```")
MBPP_TEMPLATE = ("{text}\nYour code should pass these tests:\n\n{tests}\n\n"
                 "Write the Python function in a single ```python code block.")


def import_lines(code: str) -> str:
    """The top-level ``import`` / ``from`` lines of ``code`` (prepended to a solution that omits them)."""
    return "\n".join(line for line in code.splitlines()
                     if re.match(r"\s*(import|from)\s+\S", line) and not line.startswith(" "))
