"""A character-level tokenizer over a fixed charset, loadable with ``AutoTokenizer``.

Vocabulary: ``<pad>``=0, ``<eos>``=1, ``<bos>``=2, ``<unk>``=3, then ``"\\n"`` and printable ASCII
(space … ``~``), 100 ids in all. A ``WordLevel`` model with a per-character ``Split`` pre-tokenizer,
a ``Fuse`` decoder, and a ``TemplateProcessing`` post-processor that prepends ``<bos>`` whenever
text is encoded with ``add_special_tokens=True`` (the default).

The trap: on transformers 5.x, ``AutoTokenizer.from_pretrained(<dir with a qwen2 config.json>)``
ignores ``tokenizer_class`` (qwen2 is in ``MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS``) and rebuilds
a ``Qwen2Tokenizer``: our vocab, no merges, a ByteLevel pre-tokenizer and decoder, our
post-processor. With plain characters as tokens it silently drops spaces and newlines. So the
character tokens are spelled in the byte-level alphabet (space is ``Ġ``, newline ``Ċ``; printable
ASCII is itself) and our own pipeline maps through ``ByteLevel`` too: both classes then give the
same ids and decode identically. ``tokenizer_config.json`` also names
``"tokenizer_class": "PreTrainedTokenizerFast"``, which AutoTokenizer honours for other model types
(e.g. llama) and for a tokenizer dir without a model config.

Chat template: a user (or system) turn renders as its content + ``"\\n"``; an assistant turn as its
content + ``<eos>``; ``add_generation_prompt`` adds nothing. The template has no ``<bos>``:
``<bos>`` comes from the post-processor, so encode rendered prompts with the default
``add_special_tokens=True``. (``apply_chat_template(..., tokenize=True)`` and TRL's conversational
code paths encode with ``add_special_tokens=False`` and so give no ``<bos>``.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CHARSET = "\n" + "".join(chr(c) for c in range(32, 127))
SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>")
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ message['content'] }}{{ eos_token }}"
    "{%- else -%}"
    "{{ message['content'] }}{{ '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


def byte_level_symbol(ch: str) -> str:
    """GPT-2's byte-to-unicode map for one ASCII char: printable ``!``..``~`` map to themselves,
    other bytes to ``chr(256 + k)`` in order (space -> ``Ġ``, newline -> ``Ċ``)."""
    b = ord(ch)
    if b > 127:
        raise ValueError(f"not an ASCII char: {ch!r}")
    if 33 <= b <= 126:
        return ch
    return chr(256 + sum(1 for x in range(b) if not 33 <= x <= 126))


def vocab() -> dict[str, int]:
    """Specials, then one token per charset char, spelled in the byte-level alphabet."""
    tokens = list(SPECIAL_TOKENS) + [byte_level_symbol(c) for c in CHARSET]
    return {t: i for i, t in enumerate(tokens)}


def build_tokenizer(out_dir: str | os.PathLike | None = None):
    """Build the char tokenizer; with ``out_dir``, save it there (loadable by ``AutoTokenizer``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    v = vocab()
    tok = Tokenizer(models.WordLevel(vocab=v, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated"),
    ])
    tok.decoder = decoders.Sequence([decoders.Fuse(), decoders.ByteLevel()])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", v["<bos>"])])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", model_max_length=1 << 30, clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    if out_dir is not None:
        save_tokenizer(fast, out_dir)
    return fast


def save_tokenizer(tokenizer, out_dir: str | os.PathLike) -> None:
    """``save_pretrained`` + force ``tokenizer_class`` so AutoTokenizer never swaps in Qwen2Tokenizer."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["clean_up_tokenization_spaces"] = False
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
