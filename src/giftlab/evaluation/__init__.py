"""Evaluation: benchmark loaders, generation backends (HF / vLLM), pass@k, the eval runner.

Names load lazily (PEP 562): importing one light submodule, e.g. ``giftlab.evaluation.choice`` for the tiny
world, does not import the generation backends, so code that needs only that submodule depends on it alone.
"""

from giftlab import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "benchmarks": ("BENCHMARKS", "load_benchmark", "load_jsonl_records", "register"),
    "generation": ("Generator", "HFGenerator", "Sample", "load_tokenizer", "make_generator", "render_prompt",
                   "sample_seed"),
    "passk": ("bootstrap_ci", "pass_at_1_ci", "pass_at_k", "pass_at_k_single"),
    "runner": ("evaluate",),
})
