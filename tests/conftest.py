import os

# Tests never reach the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Triton kernels run in Triton's interpreter on CPU-only machines (read when triton.language is imported).
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


import pytest  # noqa: E402


def pytest_addoption(parser, pluginmanager):
    """pyproject's addopts name pytest-xdist's --no-loadscope-reorder (the README's `-n 2` run keeps this folder's
    order of files); with xdist off (`-p no:xdist`) the option is accepted and means nothing."""
    if not pluginmanager.has_plugin("xdist"):
        parser.addoption("--no-loadscope-reorder", action="store_true", help="(pytest-xdist's; no effect without it)")


@pytest.fixture(autouse=True)
def _collector_unfrozen():
    """Tests that call giftlab.cli.run in this process (it freezes the collector when a job's main returns, for the
    job process's exit) leave the test process collecting as before."""
    yield
    import gc

    gc.unfreeze()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny random Qwen2 base with the char tokenizer, saved like a pretrained checkpoint."""
    import torch

    from giftlab.models import build_tiny_model
    from giftlab.tinyworld.tokenizer import build_tokenizer

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("base")
    tok = build_tokenizer(out)
    model = build_tiny_model("qwen2", vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=32, tokenizer=tok, seed=0)
    model.save_pretrained(out)
    return out


def pytest_collection_modifyitems(items):
    """Longest first, for the README's `-n 2 --dist loadfile` (pyproject's addopts keep this order: xdist would
    otherwise order files by their number of tests). The whole-DAG smoke run (tests/workflow/conftest.py), the
    suite's critical path, starts at once on one worker with the tests that read it; the other worker takes the
    files marked slow (real Snakemake runs, several processes), then the quick ones; the Snakemake reruns on a copy
    of the smoke run come last, once it has finished."""
    placed = {"tests/workflow/test_pipeline_smoke.py": 0, "tests/workflow/test_smoke_reruns.py": 3}

    def rank(item):
        return placed.get(item.nodeid.split("::")[0], 1 if item.get_closest_marker("slow") else 2)

    items.sort(key=rank)


def pytest_terminal_summary(terminalreporter):
    """Say why the suite was slow when a stopped SLURM controller made every Snakemake call wait."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from helpers import slurm_controller_stall

    if warning := slurm_controller_stall():
        terminalreporter.write_line(warning, yellow=True)
