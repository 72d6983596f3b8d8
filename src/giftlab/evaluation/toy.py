"""A tiny random Qwen2 model with a character-level tokenizer, for tests and speed benchmarks only.

Nothing here is used by the pipeline: the real tiny-world tokenizer lives in ``giftlab.tinyworld``.
This copy exists so the evaluation tests do not depend on it.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

TOY_SPECIALS = ("<pad>", "<eos>", "<bos>")
TOY_CHARS = string.digits + string.ascii_letters + " \n+-*/=.,?{}\\()<>_"


def build_toy_tokenizer(chars: str = TOY_CHARS):
    """A char-level ``PreTrainedTokenizerFast``: <pad>=0, <eos>=1, <bos>=2 (added to every encoding)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(TOY_SPECIALS)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<bos>", unk_token="<pad>")


def build_toy_model_dir(path, hidden: int = 64, layers: int = 4, heads: int = 4, ffn: int = 256,
                        seed: int = 0, chat_template: str | None = None) -> Path:
    """Save a random tiny Qwen2ForCausalLM + char tokenizer to ``path``; return the path."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_toy_tokenizer()
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=ffn,
        max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    # Declare the class so AutoTokenizer does not swap in Qwen2Tokenizer (which drops whitespace).
    cfg_path = path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return path
