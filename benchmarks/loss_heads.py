#!/usr/bin/env python
"""Time and memory of plain vs chunked loss heads (hidden states -> lm_head -> loss, forward + backward).

One run compares, side by side, for sft, gift (exact and released), kd:
  plain    materialise [N, V] logits (and reference logits), call the objective, autograd backward
  literal  (gift released only) the released code's ops verbatim: softmax(ref), log(p + 1e-10), scatter +beta,
           softmax, -sum pi* log_softmax(z); the "released formula" row of the performance anchors
  chunked  giftlab.objectives.chunked_loss (gradients formed chunk by chunk in the forward)
  triton   (sft, gift-exact; CUDA, or CPU with --triton-interpret for a numerics check only) chunked_loss with
           backend="triton": the per-chunk elementwise work in one fused Triton kernel
  liger    (CUDA, if importable) LigerFusedLinearCrossEntropyLoss for sft, LigerFusedLinearJSD(jsd_beta=0,
           forward KL; no CE term, so not the same loss) for kd

Reported: median ms over --repeats after --warmup, peak extra memory above the inputs (CUDA:
torch.cuda.max_memory_allocated; CPU: peak RSS growth of a fresh subprocess per variant), and ratios to the plain
head of the same objective, plus the relative difference of the loss value to the plain head.

CPU (default, small):   python benchmarks/loss_heads.py
H200 (7B shapes):       python benchmarks/loss_heads.py --device cuda --dtype bfloat16 --n 16384 --hidden 3584 \
                            --vocab 152064 [--skip-plain] [--chunk-size 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from giftlab.objectives import chunked_loss, get_objective, plain_loss

OBJECTIVES = {
    "sft": ("sft", {}),
    "gift-exact": ("gift", {"beta": 20.0, "variant": "exact"}),
    "gift-released": ("gift", {"beta": 20.0, "variant": "released"}),
    "kd": ("sft_kd", {"alpha": 0.1}),
}
HEADS = ("plain", "literal", "chunked", "triton", "liger")


def variants(args):
    out = []
    for o in args.objectives:
        for h in HEADS:
            if h in ("plain", "literal") and args.skip_plain:
                continue
            if h == "literal" and o != "gift-released":
                continue
            if h == "liger" and (args.device != "cuda" or o not in ("sft", "kd") or args.no_liger):
                continue
            if h == "triton" and (o not in ("sft", "gift-exact") or not _has_triton()
                                  or (args.device != "cuda" and not args.triton_interpret)):
                continue
            out.append((o, h))
    return out


def _has_triton():
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def make_inputs(args):
    dtype = getattr(torch, args.dtype)
    dev = torch.device(args.device)
    g = torch.Generator(device=dev).manual_seed(0)
    n, h, v = args.n, args.hidden, args.vocab
    scale = h ** -0.5

    def rnd(*shape, s=1.0):
        return (torch.randn(*shape, generator=g, device=dev) * s).to(dtype)

    hidden = rnd(n, h).requires_grad_(True)
    weight = (rnd(v, h, s=scale * 4)).requires_grad_(True)
    ref_hidden = rnd(n, h)
    ref_weight = rnd(v, h, s=scale * 4)
    labels = torch.randint(0, v, (n,), generator=g, device=dev)
    return hidden, weight, ref_hidden, ref_weight, labels


def released_literal(hidden, weight, ref_hidden, ref_weight, labels, beta=20.0, smooth_lambda=0.0):
    """The released GIFT loss, op for op (fsdp_gift_trainer.py L418-450), summed over tokens."""
    logits = hidden @ weight.T
    with torch.no_grad():
        ref_logits = (ref_hidden @ ref_weight.T).float()
        p = torch.softmax(ref_logits, -1)
        v = p.shape[-1]
        p = (1 - smooth_lambda) * p + smooth_lambda / v
        t = torch.log(p + 1e-10).clone()
        t.scatter_add_(-1, labels[:, None], torch.full_like(labels[:, None], beta, dtype=t.dtype))
        target = torch.softmax(t, -1)
    return -(target * torch.log_softmax(logits.float(), -1)).sum()


def build(obj_key, head, inputs, args):
    hidden, weight, ref_hidden, ref_weight, labels = inputs
    name, hp = OBJECTIVES[obj_key]
    obj = get_objective(name, **hp)
    if head == "plain":
        return lambda: plain_loss(obj, hidden, weight, labels, ref_hidden, ref_weight)[0]
    if head == "literal":
        return lambda: released_literal(hidden, weight, ref_hidden, ref_weight, labels, beta=hp["beta"])
    if head == "chunked":
        return lambda: chunked_loss(obj, hidden, weight, labels, ref_hidden, ref_weight, chunk_size=args.chunk_size,
                                    accum_dtype=None if args.accum_in_weight_dtype else torch.float32)[0]
    if head == "triton":
        return lambda: chunked_loss(obj, hidden, weight, labels, ref_hidden, ref_weight, chunk_size=args.chunk_size,
                                    accum_dtype=None if args.accum_in_weight_dtype else torch.float32,
                                    backend="triton")[0]
    if head == "liger":
        try:
            if name == "sft":
                from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

                ce = LigerFusedLinearCrossEntropyLoss(reduction="sum")
                return lambda: ce(weight, hidden, labels)
            from liger_kernel.transformers import LigerFusedLinearJSD

            jsd = LigerFusedLinearJSD(jsd_beta=0.0)
            return lambda: jsd(hidden, weight, ref_hidden, ref_weight) * hidden.shape[0]
        except Exception as e:  # noqa: BLE001
            print(f"[liger unavailable for {obj_key}: {type(e).__name__}: {e}]", file=sys.stderr)
            return None
    raise KeyError(head)


def sync(args):
    if args.device == "cuda":
        torch.cuda.synchronize()


def measure(obj_key, head, args, inputs=None, keep_grads=False):
    """Run one variant in this process; returns dict(ms, peak_mib, loss[, grads]). OOM -> dict(oom=True)."""
    try:
        return _measure(obj_key, head, args, inputs, keep_grads)
    except torch.OutOfMemoryError:
        if inputs is not None:
            inputs[0].grad = inputs[1].grad = None
        if args.device == "cuda":
            torch.cuda.empty_cache()
        return {"ms": float("nan"), "peak_mib": float("nan"), "loss": float("nan"), "oom": True}


def _measure(obj_key, head, args, inputs=None, keep_grads=False):
    inputs = inputs or make_inputs(args)
    hidden, weight = inputs[0], inputs[1]
    fn = build(obj_key, head, inputs, args)
    if fn is None:
        return None
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        sync(args)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    times, loss_val = [], None
    for i in range(args.warmup + args.repeats):
        hidden.grad = None
        weight.grad = None
        sync(args)
        t0 = time.perf_counter()
        loss = fn()
        loss.backward()
        sync(args)
        dt = time.perf_counter() - t0
        loss_val = float(loss.detach().float())
        del loss
        if i >= args.warmup:
            times.append(dt * 1e3)
    if cuda:
        # the .grad buffers of hidden and weight are outputs every head has; count them as extra too
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    out = {"ms": statistics.median(times), "peak_mib": peak, "loss": loss_val}
    if keep_grads:
        out["grads"] = (hidden.grad, weight.grad)
    hidden.grad = None
    weight.grad = None
    return out


def grad_rel_diff(grads, ref):
    """max |g - g_ref| / max |g_ref| over the hidden and weight gradients."""
    if grads is None or ref is None or any(g is None for g in grads + ref):
        return float("nan")
    return max(float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30))
               for a, b in zip(grads, ref))


def run_isolated(obj_key, head, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", f"{obj_key}:{head}"] + args.passthrough
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default=None, help="float32 (CPU default) | bfloat16 (CUDA default) | float16")
    ap.add_argument("--n", type=int, default=2048, help="tokens (masked response positions)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--chunk-size", type=int, default=None, help="tokens per chunk (default: CPU 256, CUDA 2048)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    ap.add_argument("--skip-plain", action="store_true", help="skip the plain and literal heads (memory-hungry)")
    ap.add_argument("--no-liger", action="store_true")
    ap.add_argument("--accum-in-weight-dtype", action="store_true", help="chunked: accumulate dW in the weight dtype")
    ap.add_argument("--no-isolate", action="store_true", help="CPU: measure in-process (peak RSS is then cumulative)")
    ap.add_argument("--triton-interpret", action="store_true",
                    help="CPU: include the triton head, run by Triton's interpreter (numerics only; very slow)")
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.triton_interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton.language is imported (here and in worker processes)
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    args.chunk_size = args.chunk_size or (2048 if args.device == "cuda" else 256)
    torch.set_num_threads(args.threads)
    raw = sys.argv[1:] if argv is None else list(argv)
    args.passthrough = [a for i, a in enumerate(raw) if a != "--_worker" and (i == 0 or raw[i - 1] != "--_worker")]

    if args._worker:
        o, h = args._worker.split(":")
        print(json.dumps(measure(o, h, args)))
        return

    isolate = args.device == "cpu" and not args.no_isolate
    shared = None if isolate else make_inputs(args)
    print(f"# loss heads: device={args.device} dtype={args.dtype} N={args.n} H={args.hidden} V={args.vocab} "
          f"chunk={args.chunk_size} dW-accum={'weight dtype' if args.accum_in_weight_dtype else 'float32'} repeats={args.repeats} warmup={args.warmup} threads={args.threads} "
          f"torch={torch.__version__}")
    how = "CUDA max_memory_allocated" if args.device == "cuda" else \
        ("peak RSS growth (one subprocess per variant)" if isolate else "peak RSS growth (in-process, cumulative)")
    print(f"# peak = {how} "
          f"above the inputs, incl. the hidden/weight grads")
    rows, plain_grads = [], {}
    for o, h in variants(args):
        if isolate:
            r = run_isolated(o, h, args)
        else:
            r = measure(o, h, args, shared, keep_grads=True)
            grads = None if r is None else r.pop("grads", None)
            if h == "plain":
                plain_grads[o] = grads
            elif h != "liger" and r is not None:
                r["grad_rd"] = grad_rel_diff(grads, plain_grads.get(o))
            del grads
        if r is not None:
            rows.append((o, h, r))
            print(f"  done {o:14s} {h:8s} {r['ms']:9.1f} ms  {r['peak_mib']:9.1f} MiB"
                  f"{'  OOM' if r.get('oom') else ''}", file=sys.stderr, flush=True)
    plain_grads.clear()
    plain = {o: r for o, h, r in rows if h == "plain" and not r.get("oom")}
    hdr = f"| {'objective':14s} | {'head':8s} | {'ms':>9s} | {'peak MiB':>9s} | {'time/plain':>10s} | " \
          f"{'mem/plain':>9s} | {'loss rel.diff':>13s} | {'grad rel.diff':>13s} |"
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    for o, h, r in rows:
        p = plain.get(o)
        tr = f"{r['ms'] / p['ms']:.2f}" if p else "-"
        mr = f"{r['peak_mib'] / p['peak_mib']:.2f}" if p and p["peak_mib"] > 0 else "-"
        rd = f"{abs(r['loss'] - p['loss']) / max(abs(p['loss']), 1e-30):.1e}" if p else "-"
        if h == "liger" and o == "kd":
            rd = "n/a (JSD only)"
        gd = f"{r['grad_rd']:.1e}" if "grad_rd" in r and r["grad_rd"] == r["grad_rd"] else "-"
        if r.get("oom"):
            tr = mr = rd = gd = "OOM"
        print(f"| {o:14s} | {h:8s} | {r['ms']:9.1f} | {r['peak_mib']:9.1f} | {tr:>10s} | {mr:>9s} | {rd:>13s} | "
              f"{gd:>13s} |")
    # the objectives issue's target: the GIFT head vs Liger's fused linear cross-entropy, same shapes and run
    by = {(o, h): r for o, h, r in rows if not r.get("oom")}
    anchor = by.get(("sft", "liger"))
    if anchor and any(o == "gift-exact" for o, _ in by):
        # GIFT forms the base logits in the head: 4 [N,H]x[H,V] matmuls (z, base z, dX, dW) against CE's 3
        tflop = 2 * args.n * args.hidden * args.vocab / 1e12
        print(f"# matmul floor: gift {4 * tflop:.1f} TFLOP vs sft {3 * tflop:.1f} TFLOP -> 1.33x at equal "
              f"matmul throughput (liger sft ran at {3 * tflop / anchor['ms'] * 1e3:.0f} TFLOP/s)")
    for h in ("chunked", "triton"):
        r = by.get(("gift-exact", h))
        if anchor and r:
            print(f"# gift-exact {h} / sft liger: time {r['ms'] / anchor['ms']:.2f}x "
                  f"(target <= 1.3x), peak {r['peak_mib']:.0f} MiB vs {anchor['peak_mib']:.0f} MiB "
                  f"(target <= 2048 MiB)")


if __name__ == "__main__":
    main()
