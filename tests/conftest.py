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
    """The whole-DAG smoke run first: under `-n 2 --dist loadfile` (the README's command) its file, the longest,
    starts at once on one worker while the other takes the rest."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] != "tests/workflow/test_pipeline_smoke.py")
