"""GRPO's rollouts on one process: the tokens transformers' ``generate`` samples, without its idle work.

TRL's ``GRPOTrainer`` (without vLLM) samples each batch with ``model.generate(input_ids, attention_mask,
generation_config=...)``: every prompt is repeated once per completion and prefilled again for each copy, and every
row is computed at every step until the batch's longest completion ends. :func:`use_fast_rollouts` gives the policy
a ``generate`` that returns the same tensor, computed as the evaluation's decoder does (one prefill per distinct
prompt, finished rows dropped: :func:`giftlab.evaluation.generation.decode_rows`). The samples stay the same because

* ``torch.multinomial(p, 1)`` is argmax(p / q) with q ~ Exp(1) drawn for every entry of ``p`` (PyTorch's
  one-sample path): what a row gets depends on its own probabilities and position, and the random stream on the
  tensor's shape alone. :class:`GenerateStreamSampler` draws at every step on the whole batch's shape, as
  ``generate`` does, with a placeholder distribution in the rows that have ended;
* a live row's logits come from its own inputs, positions and cache, whatever else is in the batch;
* the loop stops at the same step: when every row has ended or after ``max_new_tokens``.

Only the settings TRL gives plain GRPO here take this path (sampling, a temperature, no top-k / top-p / min-p /
repetition penalty or other logits processor, one process, on CPU: a GPU run samples with vLLM, and whether its
kernels give a row the same logits whatever the batch's shape is not checked); anything else goes to ``generate``
unchanged.
``tests/training/test_rollouts.py`` checks the returned tensor and the random state after it against ``generate``.
"""

from __future__ import annotations

import logging

from giftlab.evaluation.generation import decode_rows, shared_prefix_cache
from giftlab.lazy import torch

log = logging.getLogger(__name__)

# GenerationConfig fields that add a logits processor or change the loop, with the values that leave them off
NEUTRAL = {"top_k": (None, 0), "top_p": (None, 1.0), "min_p": (None,), "typical_p": (None, 1.0),
           "epsilon_cutoff": (None, 0.0), "eta_cutoff": (None, 0.0), "repetition_penalty": (None, 1.0),
           "encoder_repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
           "min_length": (None, 0), "min_new_tokens": (None, 0), "suppress_tokens": (None,),
           "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
           "sequence_bias": (None,), "guidance_scale": (None, 1.0), "watermarking_config": (None,),
           "exponential_decay_length_penalty": (None,), "renormalize_logits": (None, False),
           "stop_strings": (None,), "num_beams": (None, 1), "num_return_sequences": (None, 1),
           "max_length": (None,), "return_dict_in_generate": (None, False), "output_scores": (None, False),
           "output_logits": (None, False), "assistant_model": (None,), "prompt_lookup_num_tokens": (None,)}


class GenerateStreamSampler:
    """Logits processor for :func:`decode_rows`: ``generate``'s multinomial draw, on the whole batch's shape.

    Returns 0 at the sampled token and -inf elsewhere (the decoder takes the argmax), for the live rows only.
    """

    def __init__(self, batch_size: int, temperature: float):
        self.batch_size = batch_size
        self.temperature = temperature
        self.live = None  # the original row of each live row; None while every row is live

    def keep_rows(self, keep) -> None:
        self.live = keep if self.live is None else self.live[keep]

    def __call__(self, input_ids, logits):
        scores = logits if self.temperature == 1.0 else logits / self.temperature  # TemperatureLogitsWarper
        probs = torch.nn.functional.softmax(scores, dim=-1)
        if self.live is not None:  # ended rows: a placeholder distribution (their draws are discarded)
            full = torch.zeros((self.batch_size, probs.shape[-1]), dtype=probs.dtype, device=probs.device)
            full[:, 0] = 1.0
            full[self.live] = probs
            probs = full
        tokens = torch.multinomial(probs, num_samples=1).squeeze(1)
        if self.live is not None:
            tokens = tokens[self.live]
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, tokens[:, None], 0.0)
        return out


def fast_path_refusal(model, generation_config, kwargs) -> str | None:
    """Why ``generate`` must run itself for this call, or None when :func:`sample_like_generate` returns the same."""
    if set(kwargs) - {"input_ids", "attention_mask"}:
        return f"arguments {sorted(set(kwargs) - {'input_ids', 'attention_mask'})}"
    if generation_config is None or not generation_config.do_sample:
        return "not sampling"
    if not generation_config.max_new_tokens or generation_config.eos_token_id is None:
        return "no max_new_tokens or eos"
    if generation_config.pad_token_id is None or generation_config.temperature in (None, 0):
        return "no pad token or temperature"
    for config in (generation_config, model.generation_config):  # generate merges the model's defaults in
        for field, neutral in NEUTRAL.items():
            if getattr(config, field, None) not in neutral:
                return f"{field}={getattr(config, field)!r}"
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return "several processes"
    if next(model.parameters()).device.type != "cpu":  # identical logits across batch shapes are checked on CPU only
        return "not on CPU"
    return None


def sample_like_generate(model, input_ids, attention_mask, generation_config):
    """``model.generate(input_ids, attention_mask, generation_config=...)``'s tensor (prompt + completion, ended
    rows padded), for a config :func:`fast_path_refusal` accepts."""
    eos = generation_config.eos_token_id
    stop = {int(t) for t in (eos if isinstance(eos, (list, tuple)) else [eos])}
    cache = shared_prefix_cache(model, input_ids, attention_mask)
    sampler = GenerateStreamSampler(input_ids.shape[0], float(generation_config.temperature))
    new = decode_rows(model, input_ids, attention_mask, cache, sampler, int(generation_config.max_new_tokens), stop)
    steps = max(len(row) for row in new)
    out = torch.full((input_ids.shape[0], steps), int(generation_config.pad_token_id), dtype=input_ids.dtype,
                     device=input_ids.device)
    for i, row in enumerate(new):
        out[i, :len(row)] = torch.tensor(row, dtype=input_ids.dtype)
    return torch.cat([input_ids, out], dim=-1)


def use_fast_rollouts(model) -> None:
    """Give ``model`` (the policy TRL unwraps for generation) the ``generate`` above; other calls fall through."""
    original = model.generate
    told = set()

    def generate(*args, generation_config=None, **kwargs):
        refusal = "positional arguments" if args else fast_path_refusal(model, generation_config, kwargs)
        if refusal is not None:
            if refusal not in told:
                told.add(refusal)
                log.info("rollouts through transformers' generate (%s)", refusal)
            return original(*args, generation_config=generation_config, **kwargs)
        with torch.no_grad():
            return sample_like_generate(model, kwargs["input_ids"], kwargs["attention_mask"], generation_config)

    model.generate = generate
