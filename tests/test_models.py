"""Tiny backbones and the loader shared with real checkpoints."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from giftlab.models import build_tiny_model, load_model, load_tokenizer, n_params  # noqa: E402
from giftlab.tinyworld import build_tokenizer  # noqa: E402

QWEN_S = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=256)
LLAMA_S = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=192)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("arch,kw,lo,hi", [("qwen2", QWEN_S, 2.0e5, 3.0e5),
                                           ("llama", LLAMA_S, 1.5e5, 2.0e5)])
def test_backbone_sizes_and_special_ids(tok, arch, kw, lo, hi):
    m = build_tiny_model(arch, len(tok), tokenizer=tok, **kw)
    assert m.config.model_type == arch
    assert lo < n_params(m) < hi
    assert m.config.tie_word_embeddings
    for cfg in (m.config, m.generation_config):
        assert (cfg.pad_token_id, cfg.eos_token_id, cfg.bos_token_id) == (
            tok.pad_token_id, tok.eos_token_id, tok.bos_token_id)
    out = m(input_ids=torch.tensor([[2, 10, 11, 12]]))
    assert out.logits.shape == (1, 4, len(tok))


def test_seeded_init():
    a = build_tiny_model("llama", 99, 16, 1, 2, 32, seed=3)
    b = build_tiny_model("llama", 99, 16, 1, 2, 32, seed=3)
    c = build_tiny_model("llama", 99, 16, 1, 2, 32, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_bad_arch_and_shapes():
    with pytest.raises(ValueError, match="arch"):
        build_tiny_model("gpt9", 99, 16, 1, 2, 32)
    with pytest.raises(ValueError, match="divisible"):
        build_tiny_model("qwen2", 99, 18, 1, 4, 32)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_save_load_generate_roundtrip(tmp_path, tok, arch):
    from giftlab.tinyworld import save_tokenizer

    m = build_tiny_model(arch, len(tok), 16, 1, 2, 32, tokenizer=tok, seed=1)
    m.save_pretrained(tmp_path)
    save_tokenizer(tok, tmp_path)
    m2, t2 = load_model(tmp_path), load_tokenizer(tmp_path)
    assert m2.dtype == torch.float32
    assert load_model(str(tmp_path), dtype="bfloat16").dtype == torch.bfloat16
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    text = "Start with 3. Add 1. What is the result?\n"
    assert t2.decode(t2(text)["input_ids"], skip_special_tokens=True) == text
    enc = t2([text], return_tensors="pt")
    out = m2.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] <= enc["input_ids"].shape[1] + 5
    assert m2.generation_config.eos_token_id == t2.eos_token_id


def test_missing_paths_fail_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="not a directory") as exc:
        load_model(tmp_path / "no" / "such" / "model")
    assert "\n" not in str(exc.value)
    with pytest.raises(FileNotFoundError, match="offline") as exc:
        load_tokenizer("nobody-xyz/not-a-cached-model")
    assert "\n" not in str(exc.value)
    with pytest.raises(FileNotFoundError, match="offline"):
        load_model("nobody-xyz/not-a-cached-model")
    # scripts/evaluate.py's --model (config models.extra): a folder as is, a hub id from the cache offline
    from giftlab.models import local_checkpoint

    assert local_checkpoint(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="cannot load model 'nobody-xyz/not-a-cached-model' .HF hub is "
                                                "offline") as exc:
        local_checkpoint("nobody-xyz/not-a-cached-model")
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------ torn checkpoints are caught where they are read

def _saved_model(root, tok):
    from giftlab.models import build_tiny_model

    folder = root / "models" / "sft" / "qwen" / "gift-b3" / "epoch_2"
    model = build_tiny_model("qwen2", vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=32, tokenizer=tok, seed=0)
    model.save_pretrained(folder)
    return folder


def test_a_truncated_or_torn_checkpoint_fails_in_one_line_naming_the_file_and_its_rebuild(tmp_path, tok):
    import pytest

    from giftlab.models import CorruptCheckpoint, check_weights, load_model

    folder = _saved_model(tmp_path, tok)
    check_weights(folder)  # whole: passes, and loads
    assert load_model(folder) is not None
    weights = folder / "model.safetensors"
    whole = weights.read_bytes()
    for torn, what in ((whole[:-100], "bytes where its header describes"),   # truncated data
                       (whole[:6], "cannot hold its header"),                # truncated header length
                       (whole[:8] + b"{not json" + whole[17:], "header is not safetensors JSON")):
        weights.write_bytes(torn)
        with pytest.raises(CorruptCheckpoint) as exc:
            load_model(folder)
        message = str(exc.value)
        assert "\n" not in message and str(weights) in message and what in message
        assert "snakemake --force models/sft/qwen/gift-b3" in message  # the Snakemake output that holds it
    weights.write_bytes(whole)
    index = folder / "model.safetensors.index.json"
    index.write_text('{"weight_map": {"a": "model-00002-of-00002.safetensors"}}')
    with pytest.raises(CorruptCheckpoint, match="model-00002-of-00002.safetensors: missing"):
        check_weights(folder)


def test_rebuild_hints_name_the_output_or_say_replace():
    from giftlab.models import rebuild_hint

    assert "snakemake --force models/base/llama" in rebuild_hint("models/base/llama/model.safetensors")
    assert "snakemake --force models/rl/qwen/direct_rl" in rebuild_hint("/w/models/rl/qwen/direct_rl/model.safetensors")
    assert "replace it" in rebuild_hint("/data/hub/Qwen2.5-7B/model-00001-of-00004.safetensors")


@pytest.mark.slow
def test_a_frozen_model_holds_its_weights_in_every_process_of_an_fsdp_launch(tmp_path, tok):
    """SFT's reference under `accelerate launch` with workflow/accelerate/fsdp.yaml (CPU-RAM-efficient loading), loaded
    after the process group exists: every process computes what a single-process load does. A plain load there
    leaves zeros on rank 1 under the GPU set's transformers 5.17 (.ci/run's third stage runs this test with it);
    5.24 reads the weights on every rank either way."""
    from helpers import two_process_ranks

    base = tmp_path / "base"
    build_tiny_model("qwen2", vocab_size=len(tok), tokenizer=tok, **QWEN_S).save_pretrained(base)
    expected = float(load_model(base)(input_ids=torch.arange(3, 40).unsqueeze(0)).logits.double().abs().sum())
    ranks = two_process_ranks("frozen_load.py", base, out=tmp_path)
    assert [r["whole"] for r in ranks] == pytest.approx([expected, expected], rel=1e-6)
    assert all(r["env_after"] == "true" for r in ranks)  # the launch's setting is back for what loads later
    assert ranks[0]["plain"] == pytest.approx(expected, rel=1e-6)  # rank 0 reads the weights in any case
