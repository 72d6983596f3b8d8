"""The chunked loss head equals the plain path (materialised logits) for every objective: values and gradients of
hidden states and lm_head weight, float64, chunk sizes that do not divide N."""

from __future__ import annotations

import pytest
import torch

from giftlab.objectives import (
    OBJECTIVES,
    TokenBatch,
    chunked_loss,
    default_chunk_size,
    diagnostic_sums,
    get_objective,
    loss_head,
    plain_loss,
)

torch.set_num_threads(1)
F64 = torch.float64

CONFIGS = [
    ("sft", {}),
    ("sft_entropy", {"lambda": 0.3}),
    ("sft_ls", {"lambda": 0.2}),
    ("sft_kd", {"alpha": 0.5}),
    ("dft", {}),
    ("asft", {}),
    ("asft", {"lambda": 0.5, "kl_direction": "reverse"}),
    ("psft", {}),
    ("gift", {"beta": 3.0}),
    ("gift", {"beta": 20.0, "variant": "released"}),
    ("gift", {"beta": 2.0, "variant": "released", "smooth_lambda": 0.1}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in hp.items()) or 'default'}" for n, hp in CONFIGS]


def make(n=23, h=8, v=31, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=dtype)
    weight = torch.randn(v, h, generator=g, dtype=dtype) * 0.7
    ref_hidden = torch.randn(n, h, generator=g, dtype=dtype)
    ref_weight = torch.randn(v, h, generator=g, dtype=dtype) * 0.7
    labels = torch.randint(0, v, (n,), generator=g)
    with torch.no_grad():
        logq = torch.log_softmax((hidden @ weight.T).double(), -1).gather(-1, labels[:, None]).squeeze(-1)
        old = (logq + (torch.rand(n, generator=g, dtype=F64) - 0.5)).to(dtype)
    return hidden, weight, ref_hidden, ref_weight, labels, old


def test_all_objectives_covered():
    untested = sorted(set(OBJECTIVES) - {n for n, _ in CONFIGS})
    assert not untested, f"objectives with no case in CONFIGS here: {untested}"
    assert {n for n, _ in CONFIGS} <= set(OBJECTIVES)


def _run(fn, obj, hidden, weight, *args, **kw):
    x = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    loss, n = fn(obj, x, w, *args, **kw)
    loss.backward()
    return loss.detach(), n, x.grad, w.grad


@pytest.mark.parametrize("name,hp", CONFIGS, ids=IDS)
@pytest.mark.parametrize("chunk,closed_form", [(5, True), (7, False), (1, True), (64, True)])
def test_chunked_equals_plain(name, hp, chunk, closed_form):
    obj = get_objective(name, **hp)
    hidden, weight, rh, rw, labels, old = make()
    args = (labels, rh, rw, old)
    lp, n_p, gxp, gwp = _run(plain_loss, obj, hidden, weight, *args)
    lc, n_c, gxc, gwc = _run(chunked_loss, obj, hidden, weight, *args, chunk_size=chunk, closed_form=closed_form)
    assert n_p == n_c == hidden.shape[0]
    torch.testing.assert_close(lc, lp, atol=1e-9, rtol=0)
    torch.testing.assert_close(gxc, gxp, atol=1e-9, rtol=0)
    torch.testing.assert_close(gwc, gwp, atol=1e-9, rtol=0)


def test_chunked_scaled_loss_and_ref_logits_and_stats():
    obj = get_objective("gift", beta=3.0)
    hidden, weight, rh, rw, labels, _ = make(seed=1)
    ref_logits = rh @ rw.T
    x = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    stats = {}
    loss, n = chunked_loss(obj, x, w, labels, ref_logits=ref_logits, chunk_size=4, stats=stats, diagnose=True)
    (loss / 17.0).backward()  # the trainer divides by num_items: the backward scales the stored grads
    x2 = hidden.clone().requires_grad_(True)
    w2 = weight.clone().requires_grad_(True)
    per_token = obj(TokenBatch(x2 @ w2.T, labels, ref_logits))
    (per_token.sum() / 17.0).backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-10, rtol=0)
    torch.testing.assert_close(w.grad, w2.grad, atol=1e-10, rtol=0)
    torch.testing.assert_close(stats["per_token"], per_token.detach(), atol=1e-10, rtol=0)
    plain_diag = diagnostic_sums(TokenBatch((hidden @ weight.T), labels, ref_logits), obj)
    assert stats["diag_sums"].keys() == plain_diag.keys()  # incl. the token count "n" the trainer divides by
    for k, v in stats["diag_sums"].items():
        torch.testing.assert_close(v, plain_diag[k], atol=1e-9, rtol=0)


def test_frozen_weight_and_no_grad_mode():
    obj = get_objective("sft_kd")
    hidden, weight, rh, rw, labels, _ = make(seed=2)
    x = hidden.clone().requires_grad_(True)
    loss, _ = chunked_loss(obj, x, weight, labels, rh, rw, chunk_size=6)  # weight frozen: only dX
    loss.backward()
    x2 = hidden.clone().requires_grad_(True)
    plain_loss(obj, x2, weight, labels, rh, rw)[0].backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-10, rtol=0)
    with torch.no_grad():
        l_ng, _ = chunked_loss(obj, hidden, weight, labels, rh, rw, chunk_size=6)
    torch.testing.assert_close(l_ng, plain_loss(obj, hidden, weight, labels, rh, rw)[0].detach())


def test_bfloat16_close_to_plain():
    obj = get_objective("gift", beta=20.0)
    hidden, weight, rh, rw, labels, _ = make(n=40, h=16, v=64, seed=3, dtype=torch.bfloat16)
    lp, _, gxp, gwp = _run(plain_loss, obj, hidden, weight, labels, rh, rw)
    lc, _, gxc, gwc = _run(chunked_loss, obj, hidden, weight, labels, rh, rw, chunk_size=16)
    assert gxc.dtype == gwc.dtype == torch.bfloat16
    torch.testing.assert_close(lc, lp, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(gxc.float(), gxp.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(gwc.float(), gwp.float(), atol=2e-2, rtol=2e-2)


def _run_autocast(fn, obj, hidden, weight, *args, **kw):
    """As the trainer under sft.bf16: fp32 leaves, the forward under bf16 autocast, the backward outside it."""
    x = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, n = fn(obj, x, w, *args, **kw)
    loss.backward()
    return loss.detach(), n, x.grad, w.grad


@pytest.mark.parametrize("name,hp", CONFIGS, ids=IDS)
@pytest.mark.parametrize("closed_form", [True, False])
def test_chunked_equals_plain_under_bf16_autocast(name, hp, closed_form):
    """sft.bf16 over fp32 weights (single process, DDP): the chunked head runs (its dX = dz W into the fp32 buffer
    raised 'Expected out tensor to have dtype BFloat16') and computes in the dtypes autograd uses for the plain
    head: bf16 logits and products, gradients cast back to the fp32 leaves; the reference logits and the objective
    in fp32, as the trainer's plain head has them."""
    obj = get_objective(name, **hp)
    hidden, weight, rh, rw, labels, old = make(n=40, h=16, v=64, seed=5, dtype=torch.float32)
    args = (labels, rh, rw, old)
    lp, _, gxp, gwp = _run_autocast(plain_loss, obj, hidden, weight, *args)
    lc, _, gxc, gwc = _run_autocast(chunked_loss, obj, hidden, weight, *args, chunk_size=7, closed_form=closed_form)
    assert gxc.dtype == gwc.dtype == torch.float32
    torch.testing.assert_close(lc, lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gxc, gxp, atol=1e-5, rtol=1e-5)  # the same bf16 products, row by row
    # dW: the chunks' bf16 products summed in fp32 instead of one bf16 product: within bf16 rounding of it
    torch.testing.assert_close(gwc, gwp, atol=2e-2, rtol=1e-2)


@pytest.mark.parametrize("given", ["hidden", "logits"])
def test_gift_targets_from_fp32_reference_logits_under_bf16_autocast(given):
    """The chunked head runs inside the policy's autocast forward; the plain head gets the base's logits from a
    forward outside it (fp32). With sft.loss_head: auto choosing per micro-batch, the chunked head built them in
    bf16 (|Δ log p_ref| ~ 0.04 at LLM-sized logits), so GIFT's targets changed precision between micro-batches. Now
    its per-token loss is the plain head's, computed as the trainer computes it, to fp32 rounding."""
    obj = get_objective("gift", beta=10.0)
    g = torch.Generator().manual_seed(6)
    n, h, v = 96, 64, 500
    x, w = torch.randn(n, h, generator=g), 0.4 * torch.randn(v, h, generator=g)  # |logits| up to ~10
    rh, rw = torch.randn(n, h, generator=g), 0.4 * torch.randn(v, h, generator=g)
    y = torch.randint(0, v, (n,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = x @ w.T  # the policy's lm_head under autocast
    want = obj(TokenBatch(z.float(), y, rh @ rw.T))  # the trainer's plain head: logits leave the forward as fp32
    ref = {"ref_hidden": rh, "ref_weight": rw} if given == "hidden" else {"ref_logits": rh @ rw.T}
    stats = {}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chunked_loss(obj, x, w, y, chunk_size=40, stats=stats, **ref)
    torch.testing.assert_close(stats["per_token"], want, rtol=1e-5, atol=1e-5)


def test_loss_head_auto_and_errors():
    obj = get_objective("sft")
    hidden, weight, _, _, labels, _ = make(seed=4)
    a, _ = loss_head(obj, hidden, weight, labels)  # tiny: plain path
    b, _ = loss_head(obj, hidden, weight, labels, chunk_size=5)
    torch.testing.assert_close(a, b)
    assert default_chunk_size(16384, 152064) == 1728
    assert default_chunk_size(10, 152064) == 10
    with pytest.raises(ValueError, match="ref"):
        chunked_loss(get_objective("gift"), hidden, weight, labels)
    with pytest.raises(ValueError, match="old_logprobs"):
        chunked_loss(get_objective("psft"), hidden, weight, labels)
    empty, n = chunked_loss(obj, hidden[:0].clone().requires_grad_(True), weight, labels[:0])
    assert n == 0 and float(empty.detach()) == 0.0


def test_the_head_decides_plain_or_chunked():
    """sft.loss_head's rule lives in the head (the trainer only asks): plain, chunked, or auto by the chunk budget."""
    from giftlab.objectives.heads import head_chunk_size

    assert head_chunk_size("plain", 10_000, 152_064) is None
    assert head_chunk_size("chunked", 64, 100) == 64
    assert head_chunk_size("auto", 64, 100) is None                   # 64 x 100 logits fit: plain
    assert head_chunk_size("auto", 16_384, 152_064) == 1728           # 1 GiB of fp32 logits per chunk
    assert head_chunk_size("chunked", 64, 100, has_bias=True) is None  # a biased lm_head: plain
    with pytest.raises(ValueError, match="sft.loss_head: unknown head 'fast'"):
        head_chunk_size("fast", 1, 1)
