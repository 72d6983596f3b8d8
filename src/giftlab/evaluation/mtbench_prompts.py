"""MT-Bench's single-answer grading prompts and rules, verbatim from FastChat.

Source: github.com/lm-sys/FastChat at commit 0e6d3e4beaab66f4d3f93db72541a4abab8af28d (2025-04-12):

* the four ``single*`` prompts: ``fastchat/llm_judge/data/judge_prompts.jsonl`` (``system_prompt`` and
  ``prompt_template`` of each line, all with ``output_format`` ``[[rating]]``);
* :data:`NEED_REF_CATS` and the rating patterns: ``fastchat/llm_judge/common.py`` (``NEED_REF_CATS``,
  ``one_score_pattern``, ``one_score_pattern_backup``);
* which prompt a question gets: ``fastchat/llm_judge/gen_judgment.py`` (``make_judge_single``) and
  ``common.py`` (``run_judge_single``): categories in ``NEED_REF_CATS`` are judged against the reference
  answer(s) with the ``single-math-v1`` prompts, every other category with ``single-v1``; turn 2 uses the
  ``-multi-turn`` prompt, which shows the whole two-turn conversation.

The strings below are split over lines for width only; ``tests/evaluation/test_judge.py`` pins a digest of each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# fastchat/llm_judge/common.py
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
ONE_SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


@dataclass(frozen=True)
class JudgePrompt:
    """One line of FastChat's judge_prompts.jsonl: the system message and the user-message template."""

    name: str
    system: str
    template: str


PROMPTS: dict[str, JudgePrompt] = {
    "single-v1": JudgePrompt(
        name="single-v1",
        system=(
            "You are a helpful assistant."
        ),
        template=(
            "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided "
            "by an AI assistant to the user question displayed below. Your evaluation should consider factors "
            "such as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of the "
            "response. Begin your evaluation by providing a short explanation. Be as objective as possible. "
            "After providing your explanation, you must rate the response on a scale of 1 to 10 by strictly "
            "following this format: \"[[rating]]\", for example: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n"
            "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
        ),
    ),
    "single-math-v1": JudgePrompt(
        name="single-math-v1",
        system=(
            "You are a helpful assistant."
        ),
        template=(
            "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided "
            "by an AI assistant to the user question displayed below. Your evaluation should consider "
            "correctness and helpfulness. You will be given a reference answer and the assistant's answer. "
            "Begin your evaluation by comparing the assistant's answer with the reference answer. Identify and "
            "correct any mistakes. Be as objective as possible. After providing your explanation, you must "
            "rate the response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", for "
            "example: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n[The Start of Reference Answer]\n"
            "{ref_answer_1}\n[The End of Reference Answer]\n\n[The Start of Assistant's Answer]\n{answer}\n"
            "[The End of Assistant's Answer]"
        ),
    ),
    "single-v1-multi-turn": JudgePrompt(
        name="single-v1-multi-turn",
        system=(
            "Please act as an impartial judge and evaluate the quality of the response provided by an AI "
            "assistant to the user question displayed below. Your evaluation should consider factors such as "
            "the helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. You "
            "evaluation should focus on the assistant's answer to the second user question. Begin your "
            "evaluation by providing a short explanation. Be as objective as possible. After providing your "
            "explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: "
            "\"[[rating]]\", for example: \"Rating: [[5]]\".\n\n"
        ),
        template=(
            "<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant "
            "A:\n{answer_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n\n<|The End of "
            "Assistant A's Conversation with User|>"
        ),
    ),
    "single-math-v1-multi-turn": JudgePrompt(
        name="single-math-v1-multi-turn",
        system=(
            "Please act as an impartial judge and evaluate the quality of the response provided by an AI "
            "assistant to the user question. Your evaluation should consider correctness and helpfulness. You "
            "will be given a reference answer and the assistant's answer. You evaluation should focus on the "
            "assistant's answer to the second question. Begin your evaluation by comparing the assistant's "
            "answer with the reference answer. Identify and correct any mistakes. Be as objective as possible. "
            "After providing your explanation, you must rate the response on a scale of 1 to 10 by strictly "
            "following this format: \"[[rating]]\", for example: \"Rating: [[5]]\".\n\n"
        ),
        template=(
            "<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n### Reference answer:\n"
            "{ref_answer_1}\n\n### User:\n{question_2}\n\n### Reference answer:\n{ref_answer_2}\n\n<|The End "
            "of Reference Answer|>\n\n\n<|The Start of Assistant A's Conversation with User|>\n\n### User:\n"
            "{question_1}\n\n### Assistant A:\n{answer_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n"
            "{answer_2}\n\n<|The End of Assistant A's Conversation with User|>"
        ),
    ),
}
