"""Consistency between two checkpoints A → B of one architecture (paper §4.4, Table 4, Figure 2).

A is the earlier model of a stage pair (Base for Base → SFT, SFT for SFT → RL), B the later one.

Geometric (Table 4, "Cos" and "L2": "cosine similarity and L2 distance of the last transformer layer"), read
two ways, ``geometry`` choosing which one ``cos`` / ``l2`` (and Table 4, claim 3) report; both are always written:

* ``hidden`` (default): the last layer's output, the final hidden states (the decoder's ``last_hidden_state``,
  the input of the LM head) at the response positions below: ``hidden_cos`` = token mean of cos(h_A, h_B),
  ``hidden_l2`` = token mean of ‖h_B − h_A‖₂, with bootstrap intervals over examples like KL's. The paper's
  magnitudes imply this reading: Adam moves a weight by at most lr · (1 − β1) / √((1 − β2)(1 − β1²/β2)) per step
  (Cauchy-Schwarz over the moments: 1.16 lr for SFT's β = (0.9, 0.95), 7.3 lr for GRPO's (0.9, 0.999)), so the
  last layer's parameters (233M in Qwen2.5-7B, ‖θ‖ ≈ 305) move by at most that · steps · √N: 17.3 over 156 GRPO
  steps at lr 1e-6 and 83.2 over 6 SFT epochs (468 steps) at 1e-5, where Table 4 reports L2 47-63 and 114-117
  (docs/scale.md).
* ``parameters``: the parameters of the LAST decoder layer (``model.get_decoder().layers[-1]``: attention,
  MLP and the layer's two RMSNorms; not the final model norm, not the embeddings or LM head), flattened into
  one vector θ in ``named_parameters`` order: ``param_cos = <θ_A, θ_B> / (‖θ_A‖ ‖θ_B‖)``, ``param_l2 =
  ‖θ_B − θ_A‖₂``. Sums are accumulated tensor by tensor in float64, which equals flattening without the copy.
  Exact functions of two checkpoints: no interval.

Distributional (Table 4 "KL", Figure 2): teacher-forced on held-out validation examples (the
SFT format: chat-template prompt + demonstration + EOS, ``giftlab.data.tokenize_sft_example``),
at the response positions — the positions whose next token is a response token
(``giftlab.training.sft.response_positions``; prompt and padding never count):

* ``kl``: the token mean of ``KL(A‖B) = Σ_v p_A(v) [log p_A(v) − log p_B(v)]``. The paper does not
  state the direction; we take the earlier model A as the reference distribution (the expectation
  is under the model the update started from, as in "how far did the update move the policy away
  from what it was"). ``kl_reverse`` = token mean of KL(B‖A) is reported beside it.
* ``topk_overlap[K]``: the token mean of ``|topK(A) ∩ topK(B)| / K`` (index sets of the K largest
  logits at each position).
* ``hidden_cos`` / ``hidden_l2``: the geometric metrics above, at those positions.

Token means pool all response tokens of all examples (like the SFT validation loss); the
``*_ci95`` intervals are percentile bootstraps over examples of that pooled ratio.
Logits are computed from the masked hidden states through the LM head, chunk by chunk, so a
152k vocabulary never materialises a (batch × length × vocab) tensor; architectures whose
logits are not ``lm_head(last_hidden_state)`` (soft-capping, logit scaling) fall back to the full
forward pass. The head runs in float32 whatever dtype the checkpoints load in: bf16 logits of
magnitude ~20 are rounded in steps of 0.125, and that rounding, independent in A and B, added
10-19% to a KL of ~0.006 on synthetic logits (``logits_dtype`` in the result says which dtype the
logits had; only the full-forward fallback keeps the model's own).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from giftlab.data import example_digest, tokenize_sft_example, tokens_sha256
from giftlab.stats import ratio_bootstrap_ci
from giftlab.training.batches import PadCollator, response_positions

DEFAULT_KS = (1, 5, 10, 20, 50)
GEOMETRIES = ("hidden", "parameters")
KL_DIRECTION = ("KL(A||B) = sum_v p_A(v) * (log p_A(v) - log p_B(v)), token mean over response "
                "positions; A = the earlier model (Base for base_sft, SFT for sft_rl)")


# ---------------------------------------------------------------- geometric: last layer

def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder's list of transformer blocks (Qwen2/Llama: ``model.model.layers``)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    for name in ("layers", "h", "blocks"):
        layers = getattr(decoder, name, None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers):
            return layers
    raise ValueError(f"{type(model).__name__}: cannot find the decoder's list of layers")


def last_layer_parameters(model, layer: int = -1) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of every parameter of decoder layer ``layer`` (default: the last one)."""
    return list(decoder_layers(model)[layer].named_parameters())


@torch.no_grad()
def parameter_consistency(model_a, model_b, layer: int = -1) -> dict[str, Any]:
    """Cosine similarity and L2 distance between the flattened parameters of one decoder layer.

    Returns ``{"layer_index", "n_layer_params", "cos", "l2", "norm_a", "norm_b", "relative_l2"}``
    with ``l2 = ‖θ_B − θ_A‖₂`` and ``relative_l2 = l2 / ‖θ_A‖``. The layers must match in names and
    shapes (the same architecture).
    """
    n_layers = len(decoder_layers(model_a))
    if len(decoder_layers(model_b)) != n_layers:
        raise ValueError(f"models differ in depth: {n_layers} vs {len(decoder_layers(model_b))} layers")
    pa, pb = last_layer_parameters(model_a, layer), last_layer_parameters(model_b, layer)
    names_a, names_b = [n for n, _ in pa], [n for n, _ in pb]
    if names_a != names_b:
        raise ValueError(f"layer {layer}: parameter names differ ({names_a} vs {names_b})")
    dot = sq_a = sq_b = sq_d = 0.0
    n = 0
    for (name, a), (_, b) in zip(pa, pb):
        if a.shape != b.shape:
            raise ValueError(f"layer {layer}: {name} has shape {tuple(a.shape)} vs {tuple(b.shape)}")
        x = a.detach().to(torch.float64).reshape(-1)
        y = b.detach().to(device=x.device, dtype=torch.float64).reshape(-1)
        dot += float(x @ y)
        sq_a += float(x @ x)
        sq_b += float(y @ y)
        sq_d += float(((y - x) ** 2).sum())
        n += x.numel()
    norm_a, norm_b = sq_a ** 0.5, sq_b ** 0.5
    cos = dot / (norm_a * norm_b) if norm_a > 0 and norm_b > 0 else float("nan")
    l2 = sq_d ** 0.5
    return {
        "layer_index": layer % n_layers,
        "n_layer_params": n,
        "cos": cos,
        "l2": l2,
        "norm_a": norm_a,
        "norm_b": norm_b,
        "relative_l2": l2 / norm_a if norm_a > 0 else float("nan"),
    }


# ---------------------------------------------------------------- per-position metrics

def kl_per_position(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(a) ‖ softmax(b))`` per row of two ``(N, V)`` logit tensors, in float32.

    Terms with ``p_A = 0`` contribute 0; shifting either row by a constant changes nothing.
    """
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"logit shapes differ: {tuple(logits_a.shape)} vs {tuple(logits_b.shape)}")
    lpa = torch.log_softmax(logits_a.float(), dim=-1)
    lpb = torch.log_softmax(logits_b.float(), dim=-1)
    pa = lpa.exp()
    terms = torch.where(pa > 0, pa * (lpa - lpb), torch.zeros_like(pa))
    return terms.sum(-1).clamp_min(0.0)  # KL ≥ 0; clamp float round-off only


def topk_overlap_per_position(logits_a: torch.Tensor, logits_b: torch.Tensor,
                              ks: Sequence[int] = DEFAULT_KS) -> dict[int, torch.Tensor]:
    """``{K: |topK(a) ∩ topK(b)| / K}`` per row. One ``topk`` call at max(K) serves every K
    (sorted prefixes); with tied logits the tie order is torch's."""
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"logit shapes differ: {tuple(logits_a.shape)} vs {tuple(logits_b.shape)}")
    ks = sorted({int(k) for k in ks})
    if not ks:
        return {}
    vocab = logits_a.shape[-1]
    if ks[0] < 1 or ks[-1] > vocab:
        raise ValueError(f"top-K overlap: every K must be in [1, {vocab}] (the vocabulary), got {ks}")
    kmax = ks[-1]
    ia = torch.topk(logits_a.float(), kmax, dim=-1, sorted=True).indices
    ib = torch.topk(logits_b.float(), kmax, dim=-1, sorted=True).indices
    out = {}
    for k in ks:
        hit = (ia[:, :k, None] == ib[:, None, :k]).any(-1)
        out[k] = hit.float().sum(-1) / k
    return out


def cosine_per_position(h_a: torch.Tensor, h_b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity per row of two ``(N, H)`` tensors, in float32."""
    return torch.nn.functional.cosine_similarity(h_a.float(), h_b.float(), dim=-1, eps=1e-12)


def distance_per_position(h_a: torch.Tensor, h_b: torch.Tensor) -> torch.Tensor:
    """‖h_B − h_A‖₂ per row of two ``(N, H)`` tensors, in float32."""
    return torch.linalg.vector_norm(h_b.float() - h_a.float(), dim=-1)


# ---------------------------------------------------------------- data

def tokenize_examples(tokenizer, rows: Iterable[Mapping[str, Any]], solution_key: str,
                      max_length: int, max_examples: int | None = None) -> list[dict[str, list[int]]]:
    """SFT-format examples (prompt masked, demonstration + EOS as labels), in file order.

    Examples with no response token left after truncation are skipped; ``max_examples`` keeps the
    first that many usable ones.
    """
    out = []
    for i, row in enumerate(rows):
        if max_examples is not None and len(out) >= max_examples:
            break
        for key in ("question", solution_key):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise ValueError(f"validation row {i}: column '{key}' is missing or empty")
        ex = tokenize_sft_example(tokenizer, row["question"], row[solution_key], max_length)
        if any(label != -100 for label in ex["labels"][1:]):
            out.append(ex)
    if not out:
        raise ValueError("no validation example has a response token left (check max_length)")
    return out


def make_batches(examples: Sequence[Mapping[str, list[int]]], pad_token_id: int,
                 batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Right-padded batches (``input_ids``, ``labels``, ``attention_mask``) via ``PadCollator``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    collate = PadCollator(pad_token_id)
    return [collate(list(examples[i:i + batch_size])) for i in range(0, len(examples), batch_size)]


# ---------------------------------------------------------------- distributional

@contextmanager
def _eval_mode(*models) -> Iterator[None]:
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def _input_device(model) -> torch.device:
    return model.get_input_embeddings().weight.device


def _needs_full_forward(model) -> bool:
    """True when logits are not plain ``lm_head(last_hidden_state)`` for this architecture."""
    cfg = model.config
    return any(getattr(cfg, key, None) not in (None, 1, 1.0)
               for key in ("final_logit_softcapping", "logit_scale", "logits_scaling"))


def _response_states(model, batch: Mapping[str, torch.Tensor], mask: torch.Tensor, full: bool):
    """Final hidden states at the masked positions, and (full forward only) their logits."""
    dev = _input_device(model)
    ids, att = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
    if full:
        out = model(input_ids=ids, attention_mask=att, output_hidden_states=True, use_cache=False)
        hidden, logits = out.hidden_states[-1], out.logits
        return hidden[:, :-1][mask.to(hidden.device)], logits[:, :-1][mask.to(logits.device)]
    # no KV cache: one forward, nothing decodes after it (8 GiB at 8 x 8,192 tokens of Llama-3.1-8B)
    hidden = model.get_decoder()(input_ids=ids, attention_mask=att, use_cache=False).last_hidden_state
    return hidden[:, :-1][mask.to(hidden.device)], None


def _float32_head(model):
    """``hidden -> logits`` through the model's LM head in float32 (one float32 copy of the head per call when the
    model is in a lower precision: 2.2 GB for Qwen2.5-7B's 152k x 3584)."""
    head = model.get_output_embeddings()
    weight = head.weight.float()
    bias = head.bias.float() if getattr(head, "bias", None) is not None else None
    return lambda hidden: torch.nn.functional.linear(hidden.float(), weight, bias)


@torch.no_grad()
def response_consistency(model_a, model_b, batches: Iterable[Mapping[str, torch.Tensor]],
                         ks: Sequence[int] = DEFAULT_KS, chunk_size: int = 1024,
                         hidden: bool = True, ci_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """KL(A‖B), KL(B‖A), top-K overlap and hidden-state cosine and L2 at response positions (token means).

    ``batches``: dicts with ``input_ids``, ``attention_mask`` and ``labels`` (-100 = not a response
    token), e.g. from :func:`make_batches`. Both models see identical inputs; each runs on its own
    device and B's per-chunk results move to A's device. Returns plain floats::

        {"n_examples", "n_tokens", "logits_dtype", "kl", "kl_ci95", "kl_reverse", "kl_reverse_ci95",
         "kl_direction", "topk_overlap": {"1": ..}, "topk_overlap_ci95": {"1": [lo, hi]},
         "hidden_cos", "hidden_cos_ci95", "hidden_l2", "hidden_l2_ci95",      (hidden_* only when ``hidden``)
         "per_example": {"n_tokens": [..], "kl": [..], "kl_reverse": [..], "top1": [..], "hidden_cos": [..], ..}}

    ``per_example`` holds every example's response-token count and metric sums (every example of the batches, in
    their order; its token mean is sum / n_tokens) and the sha256 of the examples' tokens (unpadded input_ids and
    labels, :func:`giftlab.data.tokens_sha256`), for tests paired over examples.
    """
    ks = sorted({int(k) for k in ks})
    full_a, full_b = _needs_full_forward(model_a), _needs_full_forward(model_b)
    metric_names = ["kl", "kl_reverse", *(f"top{k}" for k in ks)] + (["hidden_cos", "hidden_l2"] if hidden else [])
    sums: dict[str, list[float]] = {name: [] for name in metric_names}
    counts: list[int] = []
    digests: list[bytes] = []
    head_a = None if full_a else _float32_head(model_a)
    head_b = None if full_b else _float32_head(model_b)
    logits_dtype = {str(model_a.dtype if full_a else torch.float32), str(model_b.dtype if full_b else torch.float32)}
    with _eval_mode(model_a, model_b):
        for batch in batches:
            mask, _ = response_positions(batch["labels"])
            n_rows = mask.shape[0]
            digests += [example_digest({"input_ids": ids[att.bool()].tolist(), "labels": labels[att.bool()].tolist()})
                        for ids, att, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"])]
            rows = torch.arange(n_rows)[:, None].expand_as(mask)[mask]
            ha, la_full = _response_states(model_a, batch, mask, full_a)
            hb, lb_full = _response_states(model_b, batch, mask, full_b)
            dev = ha.device
            rows = rows.to(dev)
            batch_sums = {name: torch.zeros(n_rows, dtype=torch.float64, device=dev) for name in metric_names}
            for start in range(0, ha.shape[0], chunk_size):
                sl = slice(start, start + chunk_size)
                la = la_full[sl] if full_a else head_a(ha[sl])
                lb = lb_full[sl] if full_b else head_b(hb[sl])
                la, lb = la.float(), lb.float().to(dev)
                if la.shape[-1] != lb.shape[-1]:
                    raise ValueError(f"vocabulary sizes differ: {la.shape[-1]} vs {lb.shape[-1]}")
                r = rows[sl]
                batch_sums["kl"].index_add_(0, r, kl_per_position(la, lb).double())
                batch_sums["kl_reverse"].index_add_(0, r, kl_per_position(lb, la).double())
                for k, v in topk_overlap_per_position(la, lb, ks).items():
                    batch_sums[f"top{k}"].index_add_(0, r, v.double())
                if hidden:
                    h_a, h_b = ha[sl], hb[sl].to(dev)
                    batch_sums["hidden_cos"].index_add_(0, r, cosine_per_position(h_a, h_b).double())
                    batch_sums["hidden_l2"].index_add_(0, r, distance_per_position(h_a, h_b).double())
            for name in metric_names:
                sums[name].extend(batch_sums[name].cpu().tolist())
            counts.extend(mask.sum(1).tolist())
    examples_sha256 = tokens_sha256(digests)
    cnt = np.asarray(counts, dtype=np.float64)
    keep = cnt > 0  # examples without a response token carry no weight
    cnt = cnt[keep]
    if cnt.sum() == 0:
        raise ValueError("response_consistency: no response tokens in the batches")
    arr = {name: np.asarray(v, dtype=np.float64)[keep] for name, v in sums.items()}

    def mean_ci(name: str) -> tuple[float, list[float]]:
        return float(arr[name].sum() / cnt.sum()), list(ratio_bootstrap_ci(arr[name], cnt, ci_resamples, seed))

    out: dict[str, Any] = {"n_examples": int(keep.sum()), "n_tokens": int(cnt.sum()),
                           "logits_dtype": " / ".join(sorted(d.removeprefix("torch.") for d in logits_dtype))}
    out["kl"], out["kl_ci95"] = mean_ci("kl")
    out["kl_reverse"], out["kl_reverse_ci95"] = mean_ci("kl_reverse")
    out["kl_direction"] = KL_DIRECTION
    out["topk_overlap"], out["topk_overlap_ci95"] = {}, {}
    for k in ks:
        out["topk_overlap"][str(k)], out["topk_overlap_ci95"][str(k)] = mean_ci(f"top{k}")
    if hidden:
        out["hidden_cos"], out["hidden_cos_ci95"] = mean_ci("hidden_cos")
        out["hidden_l2"], out["hidden_l2_ci95"] = mean_ci("hidden_l2")
    # each example's token sums and count, in the batches' order: claim 3 pairs two runs' results example by example
    out["per_example"] = {"examples_sha256": examples_sha256, "n_tokens": [int(c) for c in counts], **sums}
    return out


def hidden_state_consistency(model_a, model_b, batches: Iterable[Mapping[str, torch.Tensor]],
                             chunk_size: int = 1024, ci_resamples: int = 1000, seed: int = 0
                             ) -> dict[str, Any]:
    """Only the hidden-state metrics: ``{"hidden_cos", "hidden_l2"`` with their ``_ci95``, ``"n_examples",
    "n_tokens"}``."""
    full = response_consistency(model_a, model_b, batches, ks=(), chunk_size=chunk_size, hidden=True,
                                ci_resamples=ci_resamples, seed=seed)
    return {k: full[k] for k in ("hidden_cos", "hidden_cos_ci95", "hidden_l2", "hidden_l2_ci95", "n_examples",
                                 "n_tokens")}


def consistency_metrics(model_a, model_b, batches: Iterable[Mapping[str, torch.Tensor]],
                        ks: Sequence[int] = DEFAULT_KS, layer: int = -1, chunk_size: int = 1024,
                        ci_resamples: int = 1000, seed: int = 0, geometry: str = "hidden") -> dict[str, Any]:
    """Everything Table 4 and Figure 2 need for one pair A → B, as one flat dict: :func:`parameter_consistency`
    (as ``param_cos``, ``param_l2``, ``param_norm_a``, …) merged with :func:`response_consistency`, and ``cos`` /
    ``l2`` (with ``cos_ci95`` / ``l2_ci95`` where there is an interval) of the chosen ``geometry``."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}")
    params = parameter_consistency(model_a, model_b, layer=layer)
    out = {"geometry": geometry, "layer_index": params.pop("layer_index"),
           "n_layer_params": params.pop("n_layer_params"), **{f"param_{k}": v for k, v in params.items()}}
    out.update(response_consistency(model_a, model_b, batches, ks=ks, chunk_size=chunk_size,
                                    hidden=True, ci_resamples=ci_resamples, seed=seed))
    prefix = "hidden_" if geometry == "hidden" else "param_"
    for metric in ("cos", "l2"):
        out[metric] = out[prefix + metric]
        if prefix + metric + "_ci95" in out:
            out[metric + "_ci95"] = out[prefix + metric + "_ci95"]
    return out
