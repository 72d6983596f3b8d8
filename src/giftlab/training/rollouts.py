"""GRPO's rollouts on one process: what transformers' ``generate`` samples, without its idle work.

TRL's ``GRPOTrainer`` (without vLLM) samples each batch with ``model.generate(input_ids, attention_mask,
generation_config=...)``: every prompt is repeated once per completion and prefilled again for each copy, and every
row is computed at every step until the batch's longest completion ends. :func:`use_fast_rollouts` gives the policy
a ``generate`` that returns the same kind of tensor, computed as the evaluation's decoder does (one prefill per
distinct prompt, ended rows dropped: :func:`giftlab.evaluation.generation.decode_rows`).

* The random stream is ``generate``'s by construction: ``torch.multinomial(p, 1)`` is argmax(p / q) with
  q ~ Exp(1) drawn for every entry of ``p`` (PyTorch's one-sample path), so the draws depend on the tensor's shape
  alone, and :class:`GenerateStreamSampler` draws at every step on the whole batch's shape, as ``generate`` does,
  with a placeholder distribution in the rows that have ended. The loop stops at the same step (every row ended, or
  ``max_new_tokens``), so the next batch starts from the same random state.
* The tokens are ``generate``'s unless a draw falls within rounding of a tie: a live row's logits come from its own
  inputs, positions and cache, but a matrix product's rounding on this CPU can depend on how many rows it holds and
  on whether the prompt was prefilled in one pass (differences of ~1e-7 in the logits), and argmax(p / q) moves
  only when two candidates are that close (about one draw in 10^7). Measured: 10 of 10 tiny-default rollout batches
  identical (``benchmarks/rollout_paths.py``) and all 26 GRPO policies of a full tiny-default run byte-identical.

Only settings under which ``generate``'s loop is this one take the path (sampling with a temperature, no other
logits processor, stopping rule or decoding mode, the policy without dropout in train mode, one process, on CPU: a
GPU run samples with vLLM); anything else calls ``generate`` itself. ``tests/training/test_rollouts.py`` compares
returned tensors and the random state with ``generate``'s and checks the refusals.
"""

from __future__ import annotations

import logging

from giftlab.evaluation.generation import decode_rows, shared_prefix_cache
from giftlab.lazy import torch

log = logging.getLogger(__name__)

# Every GenerationConfig field (transformers 5.24) but those the decoder reads (READ), with the values under which
# generate's loop is the decoder's: no logits processor, stopping rule, cache or decoding mode beyond sampling with a
# temperature. ANY: the field has no effect on that loop. A field not listed here refuses the fast path (fails
# closed); tests/training/test_rollouts.py lists GenerationConfig's fields, so a new one is reviewed.
READ = {"max_new_tokens", "do_sample", "temperature", "pad_token_id", "eos_token_id"}
ANY = object()
NEUTRAL = {
    # sampling, logits processors and stopping rules
    "top_k": (0,), "top_p": (1.0, None), "min_p": (None,), "top_h": (None,), "typical_p": (1.0, None),
    "epsilon_cutoff": (0.0, None), "eta_cutoff": (0.0, None), "repetition_penalty": (1.0, None),
    "encoder_repetition_penalty": (1.0, None), "no_repeat_ngram_size": (0, None),
    "encoder_no_repeat_ngram_size": (0, None), "bad_words_ids": (None,), "renormalize_logits": (None, False),
    "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "remove_invalid_values": (False, None),
    "exponential_decay_length_penalty": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
    "sequence_bias": (None,), "token_healing": (None, False), "guidance_scale": (None, 1.0),
    "watermarking_config": (None,), "min_length": (0, None), "min_new_tokens": (0, None), "max_time": (None,),
    "stop_strings": (None,),
    # decoding modes other than sampling
    "num_beams": (1, None), "num_beam_groups": (1, None), "diversity_penalty": (0.0, None),
    "penalty_alpha": (None,), "low_memory": (None, False), "dola_layers": (None,), "constraints": (None,),
    "force_words_ids": (None,), "use_mtp": (None, False), "num_return_sequences": (1, None),
    "is_assistant": (None, False), "prompt_lookup_num_tokens": (None,), "max_matching_ngram_size": (None,),
    "assistant_early_exit": (None,), "assistant_ensemble_weight": (None,), "speculation_type": (None,),
    # cache and what generate returns
    "use_cache": (True,), "cache_implementation": (None,), "cache_config": (None,), "max_cache_len": (None,),
    "prefill_chunk_size": (None,), "continuous_batching_config": (None,), "return_dict_in_generate": (False, None),
    "output_scores": (False, None), "output_logits": (None, False),
    # no effect here: superseded by max_new_tokens, beam search or assistant models only, outputs only returned in a
    # dict, compilation only with a static cache, bookkeeping
    "max_length": ANY, "bos_token_id": ANY, "early_stopping": ANY, "length_penalty": ANY,
    "output_attentions": ANY, "output_hidden_states": ANY, "decoder_start_token_id": ANY,
    "num_assistant_tokens": ANY, "num_assistant_tokens_schedule": ANY, "assistant_confidence_threshold": ANY,
    "assistant_lookbehind": ANY, "target_lookbehind": ANY, "compile_config": ANY, "disable_compile": ANY,
    "_from_model_config": ANY, "transformers_version": ANY,
}


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


def effective_config(model, generation_config):
    """The config ``generate`` samples with: the call's, then the model's own values, then transformers' defaults."""
    return model._prepare_generation_config(generation_config)[0]


def fast_path_refusal(model, config, kwargs) -> str | None:
    """Why ``generate`` must run itself for this call, or None when :func:`sample_like_generate` returns the same.

    ``config``: the effective config (:func:`effective_config`)."""
    if set(kwargs) != {"input_ids", "attention_mask"}:
        return f"arguments {sorted(kwargs)}"
    if not config.do_sample:
        return "not sampling"
    if not config.max_new_tokens or config.eos_token_id is None or config.pad_token_id is None:
        return "no max_new_tokens, eos or pad token"
    if not config.temperature or config.temperature <= 0:
        return f"temperature={config.temperature!r}"
    for field, value in config.to_dict().items():
        allowed = NEUTRAL.get(field)
        if field in READ or allowed is ANY:
            continue
        if allowed is None or value not in allowed:
            return f"{field}={value!r}"
    if model.config.is_encoder_decoder:
        return "an encoder-decoder model"
    if model.training and (any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()) or any(
            "dropout" in key and isinstance(v, float) and v > 0 for key, v in model.config.to_dict().items())):
        return "dropout in train mode"  # its draws follow the batch's shape, which the decoder changes
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return "several processes"
    if next(model.parameters()).device.type != "cpu":  # a GPU run samples with vLLM; this path is measured on CPU
        return "not on CPU"
    return None


def sample_like_generate(model, input_ids, attention_mask, config):
    """``model.generate(input_ids, attention_mask, generation_config=...)``'s tensor (prompt + completion, ended
    rows padded), for an effective config :func:`fast_path_refusal` accepts."""
    eos = config.eos_token_id
    stop = {int(t) for t in (eos if isinstance(eos, (list, tuple)) else [eos])}
    cache = shared_prefix_cache(model, input_ids, attention_mask)
    sampler = GenerateStreamSampler(input_ids.shape[0], float(config.temperature))
    new = decode_rows(model, input_ids, attention_mask, cache, sampler, int(config.max_new_tokens), stop)
    steps = max(len(row) for row in new)
    out = torch.full((input_ids.shape[0], steps), int(config.pad_token_id), dtype=torch.long,
                     device=input_ids.device)
    for i, row in enumerate(new):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return torch.cat([input_ids.long(), out], dim=-1)


def use_fast_rollouts(model) -> None:
    """Give ``model`` (the policy TRL unwraps for generation) the ``generate`` above; other calls fall through."""
    original = model.generate
    told = set()

    def generate(*args, generation_config=None, **kwargs):
        try:  # a private transformers method: if it changes, generate runs itself
            config = effective_config(model, generation_config)
        except Exception as exc:  # noqa: BLE001 - generate reports a bad config itself
            config, refusal = None, f"effective config: {type(exc).__name__}"
        else:
            refusal = "positional arguments" if args else fast_path_refusal(model, config, kwargs)
        if refusal is not None:
            if refusal not in told:
                told.add(refusal)
                log.info("rollouts through transformers' generate (%s)", refusal)
            return original(*args, generation_config=generation_config, **kwargs)
        with torch.no_grad():
            return sample_like_generate(model, kwargs["input_ids"], kwargs["attention_mask"], config)

    model.generate = generate
