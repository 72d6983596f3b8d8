"""Grading throughput: GradingPool (2 workers) vs in-process ``grade``, on typical answers.

    .venv/bin/python benchmarks/grading.py [--n 2000] [--workers 2]

Typical answers: short reasoning text ending in ``\\boxed{..}``, a mix of correct/incorrect
integers, fractions (plain and LaTeX), decimals and LaTeX expressions, with each gold shared by
``--samples-per-gold`` responses (pass@1 over 4 samples, or a GRPO group). Prints wall-clock
rates (sensitive to other load on the machine) and the in-process CPU cost per answer kind.
"""

from __future__ import annotations

import argparse
import os
import random
import time

FILLER = ("We compute the quantity step by step. First simplify the expression, then substitute "
          "the values and check the result against the constraints. ")


KINDS = {  # kind: weight (roughly MATH/DeepMath-like: mostly integers, then fractions/LaTeX)
    "int": 0.45, "frac": 0.10, "latex_frac": 0.15, "decimal": 0.05, "sqrt": 0.10,
    "expr": 0.10, "tuple": 0.05,
}


def make_items(n: int, seed: int = 0, samples_per_gold: int = 4):
    """``n`` (response, gold, kind) triples; ``samples_per_gold`` responses share each gold
    (as with pass@1 over 4 samples, or a GRPO group), each independently correct w.p. 1/2."""
    rng = random.Random(seed)
    items = []
    kinds, weights = list(KINDS), list(KINDS.values())
    while len(items) < n:
        kind = rng.choices(kinds, weights)[0]
        a, b = rng.randint(1, 999), rng.randint(2, 97)
        for _ in range(samples_per_gold):
            correct = rng.random() < 0.5
            if kind == "int":
                gold, pred = str(a), str(a if correct else a + rng.randint(1, 9))
            elif kind == "frac":
                gold, pred = f"{a}/{b}", (f"{a}/{b}" if correct else f"{a + 1}/{b}")
            elif kind == "latex_frac":
                gold = f"\\frac{{{a}}}{{{b}}}"
                pred = f"\\dfrac{{{2 * a}}}{{{2 * b}}}" if correct else f"\\frac{{{b}}}{{{a}}}"
            elif kind == "decimal":
                gold = f"{a / 8:.3f}"
                pred = f"{a / 8:.3f}" if correct else f"{a / 8 + 0.5:.3f}"
            elif kind == "sqrt":
                gold = f"{a}\\sqrt{{{b}}}"
                pred = f"{a}\\sqrt{{{b}}}" if correct else f"{a}\\sqrt{{{b + 1}}}"
            elif kind == "expr":
                gold = f"x^2 + {a}x + {b}"
                pred = f"x^{{2}}+{a} x+{b}" if correct else f"x^2 + {b}x + {a}"
            else:
                gold, pred = f"({a}, {b})", (f"({a},{b})" if correct else f"({b}, {a})")
            resp = FILLER * rng.randint(1, 3) + f"Therefore the answer is $\\boxed{{{pred}}}$."
            items.append((resp, gold, kind))
    return items[:n]


def _cpu_seconds(pids):
    """Total user+system CPU seconds of ``pids`` (Linux /proc), or None."""
    try:
        total = 0
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--samples-per-gold", type=int, default=4)
    args = ap.parse_args()

    from giftlab.rewards import GradingPool, grade

    items = make_items(args.n, samples_per_gold=args.samples_per_gold)
    responses = [r for r, _, _ in items]
    golds = [g for _, g, _ in items]

    # in-process (main thread, no wall clock); warm the imports first
    grade("\\boxed{1}", "2")
    per_kind: dict[str, list[float]] = {}
    inproc = []
    c0, t0 = time.process_time(), time.perf_counter()
    for r, g, kind in items:
        c = time.process_time()
        inproc.append(grade(r, g))
        per_kind.setdefault(kind, []).append(time.process_time() - c)
    t_in, c_in = time.perf_counter() - t0, time.process_time() - c0

    t0 = time.perf_counter()
    with GradingPool(workers=args.workers, timeout=args.timeout) as pool:
        t_start = time.perf_counter() - t0
        pool.grade_many(["\\boxed{1}"] * args.workers, ["2"] * args.workers)  # workers ready
        t_warm = time.perf_counter() - t0
        pids = pool.worker_pids()
        cpu0 = _cpu_seconds(pids)
        t1 = time.perf_counter()
        pooled = pool.grade_many(responses, golds)
        t_pool = time.perf_counter() - t1
        cpu1 = _cpu_seconds(pids) if pool.worker_pids() == pids else None
        stats = pool.stats

    agree = sum(a.correct == b.correct for a, b in zip(inproc, pooled))
    acc = sum(r.correct for r in pooled) / len(pooled)
    print(f"items: {args.n}, {args.samples_per_gold} samples per gold, accuracy {acc:.3f}, "
          f"pool/in-process agreement {agree}/{args.n}")
    print(f"{'mode':<26}{'wall s':>9}{'gradings/s':>12}")
    print(f"{'in-process grade()':<26}{t_in:>9.2f}{args.n / t_in:>12.1f}"
          f"   (CPU {c_in:.2f}s -> {args.n / c_in:.1f}/s per core)")
    line = f"{f'GradingPool({args.workers} workers)':<26}{t_pool:>9.2f}{args.n / t_pool:>12.1f}"
    if cpu0 is not None and cpu1 is not None:
        w_cpu = cpu1 - cpu0
        line += (f"   (workers' CPU {w_cpu:.2f}s -> {args.n / (w_cpu / args.workers):.1f}/s "
                 f"if {args.workers} cores were free)")
    print(line)
    print(f"pool start {t_start:.2f}s, workers ready after {t_warm:.2f}s; stats {stats}")
    print("in-process CPU ms per grading by kind (mean):  " + ", ".join(
        f"{k} {1000 * sum(v) / len(v):.1f}" for k, v in sorted(per_kind.items())))
    try:
        print(f"load average during run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    except OSError:
        pass


if __name__ == "__main__":
    main()
