"""The synthetic tiny world: arithmetic-chain problems in DeepMath-103K's schema, solution styles
of differing reliability, a noisy pretraining corpus, held-out tiny benchmarks, a char tokenizer."""

from giftlab.tinyworld.corpus import (
    BENCHMARK_NAMES, World, WorldConfig, build_world, heldout_questions, make_benchmarks,
    make_corpus, make_problems,
)
from giftlab.tinyworld.problems import (
    RELIABLE_STYLES, STYLES, TOPIC, Problem, classify_style, is_correct, last_boxed, problem_id,
    render, sample_problem, sample_problems,
)
from giftlab.tinyworld.tokenizer import CHAT_TEMPLATE, build_tokenizer, save_tokenizer

__all__ = [
    "BENCHMARK_NAMES", "World", "WorldConfig", "build_world", "heldout_questions", "make_benchmarks", "make_corpus",
    "make_problems", "RELIABLE_STYLES", "STYLES", "TOPIC", "Problem", "classify_style",
    "is_correct", "last_boxed", "problem_id", "render", "sample_problem", "sample_problems",
    "CHAT_TEMPLATE", "build_tokenizer", "save_tokenizer",
]
