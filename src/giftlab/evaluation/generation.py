"""Generation backends behind one interface: HF ``generate`` (CPU/GPU) and vLLM (GPU only).

Seeding. Every sample gets its own seed (recorded on the :class:`Sample`), derived from the run
seed, the prompt text and the sample index by :func:`sample_seed`. The HF backend draws each row's
randomness as a hash of (sample seed, step, token) (Gumbel-max sampling in a logits processor), so a
sample depends only on (model, prompt, seed, index): not on the batch size, on which other prompts
share its batch, or on the order of the prompts (up to floating-point differences of batch shapes and padding).
vLLM gets the same per-request seeds: its samples repeat as far as its batched kernels give the same logits for
the same request in another batch (vLLM does not promise bitwise batch invariance). The two backends do not
produce identical text (different kernels).
``seed_scheme="deepmath"`` uses ``seed + i`` instead, as DeepMath's ``uni_eval.py`` does (the same
seeds for every prompt, so samples of different prompts share random streams).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

# One definition each, shared with training: prompts and tokenizer loading (re-exported here).
from giftlab.data import render_prompt, turn_end_ids  # noqa: F401
from giftlab.models import check_weights, load_tokenizer  # noqa: F401

log = logging.getLogger(__name__)

SEED_SCHEMES = ("hash", "deepmath")


@dataclass(frozen=True)
class Sample:
    text: str
    num_tokens: int
    finish_reason: str  # "stop" (eos / stop id) or "length" (hit max_new_tokens)
    seed: int


class Generator(Protocol):
    backend: str
    # prompts per generate() call in an evaluation (giftlab.evaluation.runner): None = all at once
    prompts_per_call: int | None

    def generate(self, prompts: list[str], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int) -> list[list[Sample]]:
        """``n`` samples for each prompt, in prompt order; greedy when ``temperature == 0``."""
        ...


def sample_seed(seed: int, prompt: str, index: int, scheme: str = "hash") -> int:
    """The seed of sample ``index`` of ``prompt``: a 31-bit hash of all three, or ``seed + index``."""
    if scheme == "deepmath":
        return int(seed) + int(index)
    if scheme != "hash":
        raise ValueError(f"seed_scheme must be one of {SEED_SCHEMES}, got {scheme!r}")
    digest = hashlib.sha256(f"{int(seed)}\x00{int(index)}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _check_sampling_args(n: int, temperature: float, top_p: float, max_new_tokens: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


# --------------------------------------------------------------------------- tokenizer / prompts

# --------------------------------------------------------------------------- HF backend


_M32 = 0xFFFFFFFF


def _mul32(h, c: int):
    """(h * c) mod 2**32 for int64 tensors h in [0, 2**32), without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (h * lo + (((h * hi) & 0xFFFF) << 16)) & _M32


def _fmix32(h):
    """MurmurHash3's 32-bit finaliser on int64 tensors holding values in [0, 2**32)."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def counter_uniform(seeds, step: int, vocab: int):
    """Uniforms in (0, 1), shape [len(seeds), vocab], a pure function of (seed, step, token id).

    Counter-based (hashing) so one vectorised call serves a whole batch on any device, and the
    same (seed, step) gives the same noise on CPU and GPU.
    """
    import torch

    row = _fmix32(seeds.to(torch.int64) & _M32)
    row = _fmix32(row ^ ((step * 0x9E3779B9) & _M32))[:, None]
    tok = torch.arange(vocab, dtype=torch.int64, device=seeds.device)[None, :]
    h = _fmix32((row + _mul32(tok, 0x27D4EB2F)) & _M32)
    h = _fmix32(h ^ (row >> 7))
    return ((h >> 8).to(torch.float32) + 0.5) / float(1 << 24)


class _PerRowSampler:
    """Logits processor: temperature, top-p, then a Gumbel-max draw with each row's own seed.

    Runs under greedy decoding, so the argmax of ``logits/T + Gumbel`` (a draw from the nucleus
    distribution) is the next token. The noise of row r at step t is a hash of (seed_r, t, token),
    so no RNG state is shared between rows or touched globally.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        import torch

        self.seeds = torch.tensor([int(x) for x in seeds], dtype=torch.int64)
        self.temperature = temperature
        self.top_p = top_p
        self.step = 0

    def keep_rows(self, keep) -> None:
        """Keep only these rows' seeds (the decode loop dropped the others from the batch)."""
        self.seeds = self.seeds[keep.to(self.seeds.device)]

    def __call__(self, input_ids, scores):
        import torch

        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
            probs = sorted_scores.softmax(dim=-1)
            mass_before = probs.cumsum(dim=-1) - probs
            drop_sorted = mass_before >= self.top_p  # the top token always has mass_before == 0
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        if self.seeds.device != scores.device:
            self.seeds = self.seeds.to(scores.device)
        uniform = counter_uniform(self.seeds, self.step, scores.shape[-1])
        self.step += 1
        gumbel = -torch.log(-torch.log(uniform))
        choice = (scores + gumbel).argmax(dim=-1)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, choice[:, None], 0.0)
        return out


def _left_padded_positions(mask):
    """Position ids of left-padded rows as ``generate`` gives them: 0 at each row's first real token."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)


@functools.lru_cache(maxsize=None)
def _cache_keyword(model_class) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def cache_kwargs(model, cache) -> dict:
    """``{keyword: cache}`` under the name this transformers' models take: ``cache`` in transformers 5.24 (the CPU
    set's, where ``past_key_values`` is deprecated), ``past_key_values`` in 5.17 (requirements-gpu.txt's: vLLM's cap),
    whose ``generate`` refuses ``cache`` and whose forward would silently ignore it."""
    return {_cache_keyword(type(model)): cache}


def shared_prefix_cache(model, ids, mask):
    """The KV cache of every row's prompt but its last token, computed once per distinct prompt.

    A batch holds ``n`` copies of each prompt (one per sample); running the prompt once and gathering its cache for
    every copy saves (n - 1) / n of the prefill (at tiny scale nearly half of what transformers' ``generate`` spent
    on a batch). The distinct rows keep the batch's padding and get the positions ``generate`` gives left-padded
    rows, so each row's cache holds the same values; decoding then feeds only the last prompt token. None when
    every row is distinct or the prompts are one token long; on the processes of a distributed (FSDP) model the
    prefix runs whether or not rows repeat, so that every process makes the same forward calls whatever its rows
    hold (one process's batch with a repeated prompt, another's without, ran one sharded forward on one only:
    a hang).
    """
    import torch
    from transformers import DynamicCache

    if ids.shape[1] < 2:
        return None
    keys = [tuple(row) for row in torch.cat([ids, mask], dim=-1).tolist()]
    first: dict[tuple, int] = {}  # each distinct row -> its first occurrence, in batch order
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    if len(first) == len(keys) and not distributed():
        return None
    slot = {key: n for n, key in enumerate(first)}
    distinct = list(first.values())
    prefix_ids, prefix_mask = ids[distinct, :-1], mask[distinct, :-1]
    cache = DynamicCache()
    with generation_mode():
        model(input_ids=prefix_ids, attention_mask=prefix_mask, position_ids=_left_padded_positions(prefix_mask),
              use_cache=True, logits_to_keep=1, **cache_kwargs(model, cache))  # only the cache: no [rows, len, V] logits
    cache.batch_select_indices(torch.tensor([slot[key] for key in keys], device=ids.device))
    return cache


def distributed() -> bool:
    """Whether this process is one of a process group (a sharded or DDP model's): its forward calls must stay in step
    with the other processes'."""
    import torch

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def generation_mode():
    """``torch.inference_mode()``, or ``torch.no_grad()`` on the processes of a distributed (FSDP2) model: its forward
    allocates the gathered parameters anew, and made under inference mode they stay inference tensors, so the next
    training step's all-gather into them fails ("Inplace update to inference tensor outside InferenceMode"): a GRPO
    run crashed at its first step after the RL-dynamics evaluation of step 0."""
    import torch

    return torch.no_grad() if distributed() else torch.inference_mode()


def decode_rows(model, ids, mask, cache, sampler, max_new_tokens: int, stop: set[int]) -> list[list[int]]:
    """Each row's new tokens (up to its stop token), dropping a row from the batch once it has stopped.

    The steps ``generate`` takes with greedy search and ``sampler`` as its logits processor, without its cost at the
    tail: ``generate`` keeps computing every finished row until the batch's longest answer ends. Each row's inputs,
    positions and cache are its own, so dropping others does not change what it computes; ``sampler.keep_rows``
    is told which rows remain. ``cache``: None, or :func:`shared_prefix_cache`'s (all but the last prompt token).
    """
    import torch
    from transformers import DynamicCache

    step_ids = ids if cache is None else ids[:, -1:]
    cache = cache if cache is not None else DynamicCache()
    positions = _left_padded_positions(mask)[:, -step_ids.shape[1]:]
    rows = torch.arange(ids.shape[0], device=ids.device)  # the original row of each live row
    new: list[list[int]] = [[] for _ in range(ids.shape[0])]
    stop_ids = torch.tensor(sorted(stop), dtype=torch.long, device=ids.device)
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            logits = model(input_ids=step_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                           logits_to_keep=1, **cache_kwargs(model, cache)).logits[:, -1, :].float()
            scores = sampler(None, logits) if sampler is not None else logits
            tokens = scores.argmax(dim=-1)
            for row, token in zip(rows.tolist(), tokens.tolist()):
                new[row].append(token)
            live = ~torch.isin(tokens, stop_ids)
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            positions = positions[:, -1:] + 1
            step_ids = tokens[:, None]
            if not bool(live.all()):
                if not bool(live.any()):
                    break
                keep = live.nonzero().squeeze(-1)
                rows, mask, positions, step_ids = rows[keep], mask[keep], positions[keep], step_ids[keep]
                cache.batch_select_indices(keep)
                if sampler is not None:
                    sampler.keep_rows(keep)
    return new


def answer_stop_ids(tokenizer, extra: Sequence[int] = ()) -> list[int]:
    """The ids that end an answer: the tokenizer's EOS, the chat template's end of turn (:func:`turn_end_ids`, which
    a base model prompted in the template emits instead) and ``extra``."""
    eos = tokenizer.eos_token_id
    return sorted({int(i) for i in ([eos] if eos is not None else [])} | {int(i) for i in extra}
                  | set(turn_end_ids(tokenizer)))


class HFGenerator:
    """transformers ``generate`` with left padding and the KV cache, batched over (prompt, sample) rows.

    ``batch_size`` counts rows (prompt copies), not prompts. Rows are sorted by prompt length to
    cut padding; thanks to per-row seeds this changes no sample (up to floating point). Greedy (T=0) generates
    each prompt once and repeats it ``n`` times.
    """

    backend = "hf"
    prompts_per_call = 64  # its own batches hold eval.batch_size rows; chunks give progress and per-sample timings

    def __init__(self, model_path, batch_size: int = 32, device: str | None = None,
                 dtype: str = "auto", stop_token_ids: Sequence[int] = (),
                 add_special_tokens: bool = True, seed_scheme: str = "hash",
                 ignore_eos: bool = False):
        import torch
        from transformers import AutoModelForCausalLM

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer = load_tokenizer(model_path)
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        if Path(model_path).is_dir():
            check_weights(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype)
        model.to(device).eval()
        self._setup(model, tokenizer, str(model_path), batch_size, device, stop_token_ids,
                    add_special_tokens, seed_scheme, ignore_eos, borrowed=False)

    @classmethod
    def from_model(cls, model, tokenizer, batch_size: int = 32, stop_token_ids: Sequence[int] = (),
                   add_special_tokens: bool = True, seed_scheme: str = "hash",
                   ignore_eos: bool = False, name: str = "<in-memory>") -> "HFGenerator":
        """Wrap a live model (e.g. the policy inside a trainer) instead of loading one from disk.

        The model is *borrowed*: it is neither moved nor cast nor switched to eval mode (the
        caller decides; :class:`giftlab.training.dynamics.DynamicsCallback` puts it in eval mode for
        the evaluation and back in train mode afterwards), and its ``generation_config`` is swapped
        for the neutral one only for the duration of each ``generate`` call. The tokenizer is
        copied, so its padding side / pad token are not changed for the caller. Samples come out
        on the model's device, with the same per-row seeding as a model loaded from a path.
        """
        import copy

        self = cls.__new__(cls)
        try:
            tokenizer = copy.deepcopy(tokenizer)
        except Exception:  # pragma: no cover - a tokenizer that cannot be copied is used as is
            log.warning("HFGenerator.from_model: tokenizer could not be copied; padding side is set in place")
        device = str(next(model.parameters()).device)
        self._setup(model, tokenizer, name, batch_size, device, stop_token_ids,
                    add_special_tokens, seed_scheme, ignore_eos, borrowed=True)
        return self

    def _setup(self, model, tokenizer, name, batch_size, device, stop_token_ids, add_special_tokens,
               seed_scheme, ignore_eos, borrowed: bool) -> None:
        from transformers import GenerationConfig

        if seed_scheme not in SEED_SCHEMES:
            raise ValueError(f"seed_scheme must be one of {SEED_SCHEMES}, got {seed_scheme!r}")
        self.model_path = name
        self.batch_size = int(batch_size)
        self.device = device
        self.add_special_tokens = add_special_tokens
        self.seed_scheme = seed_scheme
        self.ignore_eos = ignore_eos  # always run to max_new_tokens (throughput benchmarks)
        self.borrowed = borrowed
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = model
        self.stop_ids = answer_stop_ids(self.tokenizer, stop_token_ids)
        if not self.stop_ids:
            raise ValueError(f"{name}: tokenizer has no eos_token_id and no stop ids were given")
        # Explicit neutral settings: a checkpoint's generation_config.json (e.g. Qwen's
        # repetition_penalty=1.05, top_k=20) must not leak into the evaluation.
        # eos is passed per call (so ignore_eos can switch it off). A borrowed model keeps its own
        # generation_config outside our generate calls (its trainer relies on it).
        self._neutral_config = GenerationConfig(
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id)
        if not borrowed:
            self.model.generation_config = self._neutral_config

    def generate(self, prompts: list[str], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: int) -> list[list[Sample]]:
        _check_sampling_args(n, temperature, top_p, max_new_tokens)
        greedy = temperature == 0
        copies = 1 if greedy else n
        rows = [(p, i) for p in range(len(prompts)) for i in range(copies)]
        lengths = [len(self.tokenizer(p, add_special_tokens=self.add_special_tokens).input_ids)
                   for p in prompts]
        rows.sort(key=lambda r: (lengths[r[0]], r[0], r[1]))
        results: dict[tuple[int, int], Sample] = {}
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            seeds = [sample_seed(seed, prompts[p], i, self.seed_scheme) for p, i in batch]
            samples = self._generate_rows([prompts[p] for p, _ in batch], seeds, greedy,
                                          temperature, top_p, max_new_tokens)
            results.update(zip(batch, samples))
        out = []
        for p in range(len(prompts)):
            if greedy:
                s = results[(p, 0)]
                out.append([Sample(s.text, s.num_tokens, s.finish_reason,
                                   sample_seed(seed, prompts[p], i, self.seed_scheme))
                            for i in range(n)])
            else:
                out.append([results[(p, i)] for i in range(n)])
        return out

    def _generate_rows(self, texts, seeds, greedy, temperature, top_p, max_new_tokens):
        from transformers import GenerationConfig, LogitsProcessorList

        enc = self.tokenizer(texts, return_tensors="pt", padding=True,
                             add_special_tokens=self.add_special_tokens).to(self.device)
        cache = shared_prefix_cache(self.model, enc["input_ids"], enc["attention_mask"])
        sampler = None if greedy else _PerRowSampler(seeds, temperature, top_p)
        stop = set() if self.ignore_eos else set(self.stop_ids)
        if distributed():
            # sharded (FSDP) ranks must run forward in step: generate's synced_gpus does, pruning rows would not
            processors = LogitsProcessorList([sampler] if sampler is not None else [])
            config = GenerationConfig(
                do_sample=False, max_new_tokens=max_new_tokens,
                eos_token_id=None if self.ignore_eos else self.stop_ids, pad_token_id=self.tokenizer.pad_token_id,
                bos_token_id=self.tokenizer.bos_token_id, use_cache=True, num_beams=1)
            saved = self.model.generation_config
            self.model.generation_config = self._neutral_config
            try:
                with generation_mode():
                    out = self.model.generate(**enc, generation_config=config, logits_processor=processors,
                                              **cache_kwargs(self.model, cache))
            finally:
                self.model.generation_config = saved
            new = out[:, enc["input_ids"].shape[1]:].tolist()
        else:
            new = decode_rows(self.model, enc["input_ids"], enc["attention_mask"], cache, sampler, max_new_tokens,
                              stop)
        samples = []
        for ids, s in zip(new, seeds):
            end = next((j for j, t in enumerate(ids) if t in stop), None)
            if end is None:
                kept, reason = ids, "length"
            else:
                kept, reason = ids[:end + 1], "stop"
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            samples.append(Sample(text=text, num_tokens=len(kept), finish_reason=reason, seed=s))
        return samples


# --------------------------------------------------------------------------- vLLM backend


class VLLMGenerator:  # vLLM runs on a GPU only; tests/evaluation/test_vllm_generator.py stands in for its API
    """vLLM offline ``LLM.generate``: one request per (prompt, sample), each with its own seed.

    Prompts are tokenized and outputs decoded with :func:`load_tokenizer` (vLLM's own tokenizer
    loading goes through ``AutoTokenizer`` and would drop whitespace of a char-level tokenizer).
    """

    backend = "vllm"
    # one call: vLLM schedules every request itself, and chunks would each wait for their longest sample (an
    # evaluation job splits it every eval.save_every_prompts all the same, to keep what a kill would lose)
    prompts_per_call = None

    def __init__(self, model_path, stop_token_ids: Sequence[int] = (), seed_scheme: str = "hash",
                 max_model_len: int | None = None, gpu_memory_utilization: float = 0.9,
                 dtype: str = "auto", add_special_tokens: bool = True, **llm_kwargs: Any):
        from vllm import LLM

        if seed_scheme not in SEED_SCHEMES:
            raise ValueError(f"seed_scheme must be one of {SEED_SCHEMES}, got {seed_scheme!r}")
        self.model_path = str(model_path)
        self.seed_scheme = seed_scheme
        self.add_special_tokens = add_special_tokens
        self.max_model_len = max_model_len
        self.tokenizer = load_tokenizer(model_path)
        if Path(self.model_path).is_dir():
            check_weights(self.model_path)
        self.stop_ids = answer_stop_ids(self.tokenizer, stop_token_ids)
        # generation_config="vllm": vLLM's neutral defaults, not the checkpoint's sampling defaults.
        self.llm = LLM(model=self.model_path, dtype=dtype, max_model_len=max_model_len,
                       gpu_memory_utilization=gpu_memory_utilization,
                       generation_config="vllm", **llm_kwargs)

    def close(self) -> None:
        """Stop the engine and free its GPU memory (its core runs in a process of its own, holding the weights and
        the KV cache until it is shut down)."""
        engine = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if engine is not None:
            engine.shutdown()
        self.llm = None

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        from vllm import SamplingParams

        _check_sampling_args(n, temperature, top_p, max_new_tokens)
        copies = 1 if temperature == 0 else n  # greedy: one request, its answer copied (as HFGenerator does)
        reqs, params, seeds = [], [], []
        for p, prompt in enumerate(prompts):
            ids = self.tokenizer(prompt, add_special_tokens=self.add_special_tokens).input_ids
            if self.max_model_len is not None and len(ids) >= self.max_model_len:
                # vLLM refuses the whole call for one such prompt, in an error that names neither it nor the key
                raise ValueError(f"prompt {p + 1} of {len(prompts)} has {len(ids)} tokens, no room left in "
                                 f"max_model_len {self.max_model_len} (eval.vllm.max_model_len)")
            for i in range(copies):
                s = sample_seed(seed, prompt, i, self.seed_scheme)
                reqs.append({"prompt_token_ids": ids})
                params.append(SamplingParams(
                    n=1, temperature=temperature, top_p=top_p, top_k=-1, max_tokens=max_new_tokens,
                    seed=s, stop_token_ids=self.stop_ids, detokenize=False))
                seeds.append(s)
        outputs = self.llm.generate(reqs, params, use_tqdm=False)
        stop = set(self.stop_ids)
        flat = []
        for out, s in zip(outputs, seeds):
            c = out.outputs[0]
            ids = list(c.token_ids)
            end = next((j for j, t in enumerate(ids) if t in stop), None)
            kept = ids if end is None else ids[:end + 1]
            reason = "length" if c.finish_reason == "length" and end is None else "stop"
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            flat.append(Sample(text=text, num_tokens=len(kept), finish_reason=reason, seed=s))
        if copies == n:
            return [flat[p * n:(p + 1) * n] for p in range(len(prompts))]
        return [[Sample(flat[p].text, flat[p].num_tokens, flat[p].finish_reason,
                        sample_seed(seed, prompt, i, self.seed_scheme)) for i in range(n)]
                for p, prompt in enumerate(prompts)]


# --------------------------------------------------------------------------- factory


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA install
        return False
    import torch

    return torch.cuda.is_available()


# eval.vllm: vLLM engine settings, ignored by the HF backend
VLLM_ENGINE_KEYS = ("max_model_len", "gpu_memory_utilization", "tensor_parallel_size")


def make_generator(model_path, backend: str = "auto", **kwargs) -> Generator:
    """``backend``: "auto" (vLLM when importable with a CUDA device, else HF), "hf" or "vllm"."""
    if backend == "auto":
        backend = "vllm" if vllm_available() else "hf"
    if backend == "hf":
        for key in VLLM_ENGINE_KEYS:
            kwargs.pop(key, None)
        return HFGenerator(model_path, **kwargs)
    if backend == "vllm":  # pragma: no cover
        kwargs.pop("batch_size", None)
        kwargs.pop("device", None)
        return VLLMGenerator(model_path, **kwargs)
    raise ValueError(f"backend must be 'auto', 'hf' or 'vllm', got {backend!r}")
