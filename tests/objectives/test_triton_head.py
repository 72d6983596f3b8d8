"""The fused Triton loss-head kernel (SFT / exact GIFT) against independent references.

On CPU-only machines the kernel runs in Triton's interpreter (``TRITON_INTERPRET=1``, set in conftest), which
executes the same kernel code with numpy: numerics are checked here, speed only by benchmarks/loss_heads.py on a GPU.
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")

from giftlab.objectives import chunked_loss, get_objective, plain_loss  # noqa: E402
from giftlab.objectives.heads.triton import check_supported, gift_rows_  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def reference_rows(z, r, y, beta):
    """Straight from the definition: pi* = softmax(log softmax(r) + beta e_y); loss = -sum pi* log q; dz = q - pi*."""
    z, r = z.double(), r.double()
    logits = torch.log_softmax(r, -1)
    if math.isinf(beta):
        target = torch.nn.functional.one_hot(y, z.shape[1]).double()
    else:
        target = torch.softmax(logits + beta * torch.nn.functional.one_hot(y, z.shape[1]).double(), -1)
    logq = torch.log_softmax(z, -1)
    return -(target * logq).sum(-1), logq.exp() - target, target.gather(1, y[:, None]).squeeze(1)


@pytest.mark.parametrize("beta", [0.0, 0.5, 3.0, 20.0, math.inf])
@pytest.mark.parametrize("block", [64, None])  # 64: several blocks per row, the last one partial
def test_kernel_rows_match_definition(beta, block):
    g = torch.Generator().manual_seed(int(beta if math.isfinite(beta) else 99))
    n, v = 9, 300
    z = (3 * torch.randn(n, v, generator=g)).to(DEVICE)
    r = (3 * torch.randn(n, v, generator=g)).to(DEVICE)
    y = torch.randint(0, v, (n,), generator=g).to(DEVICE)
    want_loss, want_grad, want_mass = reference_rows(z, r, y, beta)
    zz = z.clone()
    loss, stats = gift_rows_(zz, r.clone(), y, beta, block=block)
    torch.testing.assert_close(loss.double(), want_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(zz.double(), want_grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats[:, 0].double(), want_mass, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(stats[:, 1].double(), torch.softmax(r.double(), -1).gather(1, y[:, None])[:, 0],
                               rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(stats[:, 2].double(), -torch.log_softmax(z.double(), -1).gather(1, y[:, None])[:, 0],
                               rtol=1e-5, atol=1e-5)


def test_kernel_without_reference_is_cross_entropy():
    z = torch.randn(5, 77, device=DEVICE)
    y = torch.tensor([0, 76, 3, 3, 40], device=DEVICE)
    zz = z.clone()
    loss, _ = gift_rows_(zz, None, y, math.inf, block=32)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(z, y, reduction="none"), rtol=1e-5, atol=1e-5)
    zr = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(zr, y, reduction="sum"), zr)
    torch.testing.assert_close(zz, grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, hp", [("sft", {}), ("gift", {"beta": 3.0}), ("gift", {"beta": 10.0})])
def test_triton_backend_equals_plain_head(name, hp):
    """Values, gradients of hidden and lm_head weight, and diagnostics, vs the materialised float64 path."""
    obj = get_objective(name, **hp)
    g = torch.Generator().manual_seed(1)
    n, h, v = 37, 16, 300
    x = torch.randn(n, h, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_(True)
    w = torch.randn(v, h, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_(True)
    rx = torch.randn(n, h, generator=g, dtype=torch.float64).to(DEVICE)
    rw = torch.randn(v, h, generator=g, dtype=torch.float64).to(DEVICE)
    y = torch.randint(0, v, (n,), generator=g).to(DEVICE)
    want, _ = plain_loss(obj, x, w, y, rx, rw)
    want_gx, want_gw = torch.autograd.grad(3.0 * want, (x, w))
    torch_stats, triton_stats = {}, {}
    chunked_loss(obj, x.detach(), w.detach(), y, rx, rw, chunk_size=10, stats=torch_stats, diagnose=True)
    got, _ = chunked_loss(obj, x, w, y, rx, rw, chunk_size=10, backend="triton", stats=triton_stats, diagnose=True)
    gx, gw = torch.autograd.grad(3.0 * got, (x, w))
    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gx, want_gx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, want_gw, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(triton_stats["per_token"].double(), torch_stats["per_token"].double(),
                               rtol=1e-5, atol=1e-5)
    assert triton_stats["diag_sums"].keys() == torch_stats["diag_sums"].keys()
    for key, val in torch_stats["diag_sums"].items():
        assert float(triton_stats["diag_sums"][key]) == pytest.approx(float(val), rel=1e-5, abs=1e-5), key


def test_bf16_logits_stay_bf16_and_close():
    obj = get_objective("gift", beta=3.0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(24, 32, generator=g).to(DEVICE)
    w = (0.3 * torch.randn(500, 32, generator=g)).to(DEVICE)
    rx, rw = x + 0.1 * torch.randn(24, 32, generator=g).to(DEVICE), w.clone()
    y = torch.randint(0, 500, (24,), generator=g).to(DEVICE)
    want, _ = plain_loss(obj, x.double(), w.double(), y, rx.double(), rw.double())
    xb, wb = x.bfloat16().requires_grad_(True), w.bfloat16().requires_grad_(True)
    got, _ = chunked_loss(obj, xb, wb, y, rx.bfloat16(), rw.bfloat16(), chunk_size=8, backend="triton")
    got.backward()
    assert xb.grad.dtype == torch.bfloat16 and wb.grad.dtype == torch.bfloat16
    assert float(got.detach()) == pytest.approx(float(want), rel=2e-2)


@pytest.mark.parametrize("name, hp", [("sft", {}), ("gift", {"beta": 3.0}), ("gift", {"beta": 10.0})])
def test_triton_backend_equals_plain_head_under_bf16_autocast(name, hp):
    """sft.bf16 over fp32 weights: the kernel's bf16 dz contracts with the fp32 lm_head weight in autocast's dtype,
    as the plain head's backward does (it raised 'Expected out tensor to have dtype BFloat16'), and the base's
    logits stay fp32 as the plain head has them (they were bf16 inside the policy's autocast forward)."""
    obj = get_objective(name, **hp)
    g = torch.Generator().manual_seed(3)
    n, h, v = 37, 16, 300
    x, w = torch.randn(n, h, generator=g).to(DEVICE), (0.5 * torch.randn(v, h, generator=g)).to(DEVICE)
    rx, rw = torch.randn(n, h, generator=g).to(DEVICE), (0.5 * torch.randn(v, h, generator=g)).to(DEVICE)
    y = torch.randint(0, v, (n,), generator=g).to(DEVICE)
    grads = []
    for fn, kw in ((plain_loss, {}), (chunked_loss, {"chunk_size": 10, "backend": "triton"})):
        xl, wl = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss, _ = fn(obj, xl, wl, y, rx, rw, **kw)
        loss.backward()
        grads.append((loss.detach(), xl.grad, wl.grad))
    (lp, gxp, gwp), (lc, gxc, gwc) = grads
    assert gxc.dtype == gwc.dtype == torch.float32
    torch.testing.assert_close(lc, lp, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gxc, gxp, rtol=1e-2, atol=1e-2)  # dz rounded to bf16 from the kernel's fp32 vs torch's
    torch.testing.assert_close(gwc, gwp, rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("name, hp", [("gift", {"variant": "released"}), ("gift", {"smooth_lambda": 0.1}),
                                      ("sft_kd", {}), ("dft", {})])
def test_unsupported_objectives_fail_in_one_line(name, hp):
    obj = get_objective(name, **hp)
    with pytest.raises(ValueError, match="loss backend 'triton' supports") as exc:
        check_supported(obj)
    assert "\n" not in str(exc.value)
    x, w = torch.randn(4, 8), torch.randn(20, 8)
    with pytest.raises(ValueError, match="use backend 'torch'"):
        chunked_loss(obj, x, w, torch.zeros(4, dtype=torch.long), x, w, old_logprobs=torch.zeros(4), chunk_size=2,
                     backend="triton")


def test_sft_loss_backend_resolves_per_objective(monkeypatch):
    from giftlab.objectives.heads import choose_backend as resolve_loss_backend  # the head chooses, not the trainer

    assert resolve_loss_backend("triton", get_objective("gift", beta=3.0)) == "triton"
    assert resolve_loss_backend("triton", get_objective("asft")) == "torch"   # not in the kernel: torch loop
    assert resolve_loss_backend("torch", get_objective("gift")) == "torch"
    with pytest.raises(ValueError, match="sft.loss_backend: unknown backend 'cuda'"):
        resolve_loss_backend("cuda", get_objective("sft"))
    if not torch.cuda.is_available():
        monkeypatch.delenv("TRITON_INTERPRET")
        with pytest.raises(ValueError, match=r"^sft.loss_backend: loss backend 'triton' runs on CUDA tensors"):
            resolve_loss_backend("triton", get_objective("sft"))


def test_edge_cases_stay_finite():
    """beta = inf with a base that gives y* zero probability, and whole blocks of -inf reference logits."""
    z = torch.randn(3, 130, device=DEVICE)
    r = torch.randn(3, 130, device=DEVICE)
    r[:, :64] = -float("inf")
    y = torch.tensor([0, 5, 100], device=DEVICE)  # rows 0 and 1: r_y = -inf
    for beta in (math.inf, 3.0, 0.0):
        zz = z.clone()
        loss, stats = gift_rows_(zz, r.clone(), y, beta, block=64)
        assert torch.isfinite(zz).all() and torch.isfinite(stats).all(), beta
        if beta > 0:
            assert torch.isfinite(loss).all(), beta
    zz = z.clone()
    loss, _ = gift_rows_(zz, r.clone(), y, math.inf, block=64)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(z, y, reduction="none"), rtol=1e-5, atol=1e-5)
    # beta = 0 targets the base distribution, which gives y* = 0 probability: a finite loss off the -inf entries
    zz = z.clone()
    loss, _ = gift_rows_(zz, r.clone(), y, 0.0, block=64)
    want = -(torch.softmax(r, -1) * torch.log_softmax(z, -1)).nan_to_num(0.0).sum(-1)
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-5)


def test_out_of_range_labels_fail_in_one_line():
    obj = get_objective("sft")
    x, w = torch.randn(4, 8, device=DEVICE), torch.randn(20, 8, device=DEVICE)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 20\)"):
        chunked_loss(obj, x, w, torch.tensor([0, 1, 20, 3], device=DEVICE), chunk_size=2, backend="triton")
