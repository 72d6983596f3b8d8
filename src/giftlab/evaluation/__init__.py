"""Evaluation: benchmark loaders, generation backends (HF / vLLM), pass@k, the eval runner."""

from giftlab.evaluation.benchmarks import BENCHMARKS, load_benchmark, load_jsonl_records, register
from giftlab.evaluation.generation import (Generator, HFGenerator, Sample, load_tokenizer,
                                           make_generator, render_prompt, sample_seed)
from giftlab.evaluation.passk import bootstrap_ci, pass_at_1_ci, pass_at_k, pass_at_k_single
from giftlab.evaluation.runner import evaluate

__all__ = [
    "BENCHMARKS", "Generator", "HFGenerator", "Sample", "bootstrap_ci", "evaluate",
    "load_benchmark", "load_jsonl_records", "load_tokenizer", "make_generator", "pass_at_1_ci",
    "pass_at_k", "pass_at_k_single", "register", "render_prompt", "sample_seed",
]
