"""Evaluation: benchmark loaders, generation backends (HF / vLLM), the eval runner (pass@k: ``giftlab.stats``).

Names load lazily (PEP 562): importing one light submodule, e.g. ``giftlab.evaluation.choice`` for the tiny
world, does not import the generation backends, so code that needs only that submodule depends on it alone.
"""

from giftlab import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "benchmarks": ("BENCHMARKS", "load_benchmark", "load_jsonl_records", "register"),
    "generation": ("Generator", "HFGenerator", "Sample", "load_tokenizer", "make_generator", "render_prompt",
                   "sample_seed"),
    "runner": ("evaluate",),
})
