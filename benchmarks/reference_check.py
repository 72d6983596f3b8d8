"""Compare two workspaces of config/reference_check.yaml: GIFT with the live reference vs the cached one.

    .venv/bin/python benchmarks/reference_check.py --exact WS_EXACT --cached WS_CACHED [--backbone qwen]

Each workspace ran `snakemake --configfile config/mini.yaml config/reference_check.yaml [...cached.yaml] --
phase_eval`: the same base, split and seeds. Per run (one per seed) it reads the SFT validation loss of every
epoch and pass@1 before and after RL on every benchmark, and prints the seed means of both modes with
the paired difference (cached − exact, over seeds: mean and Student-t 95% interval).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def read_runs(workspace: Path, backbone: str) -> dict[str, dict[str, float]]:
    """{run: {metric: value}} of every SFT run of the workspace (validation loss, pass@1 before and after RL)."""
    runs = {}
    for metrics in sorted((workspace / "results" / "sft" / backbone).glob("*/metrics.json")):
        run = metrics.parent.name
        record = json.loads(metrics.read_text())
        row = {f"sft val loss, epoch {e['epoch']}": e["val_loss"] for e in record["epochs"]}
        for stage in ("sft", "rl"):
            for summary in sorted((workspace / "results" / "eval" / stage / backbone / run).glob("*.summary.json")):
                name = summary.name[: -len(".summary.json")]
                row[f"{'before' if stage == 'sft' else 'after'} RL {name} pass@1"] = \
                    100 * json.loads(summary.read_text())["pass@1"]
        runs[run] = row
    return runs


def main(argv=None) -> None:
    from giftlab.stats import seed_interval

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exact", type=Path, required=True)
    p.add_argument("--cached", type=Path, required=True)
    p.add_argument("--backbone", default="qwen")
    args = p.parse_args(argv)
    exact, cached = read_runs(args.exact, args.backbone), read_runs(args.cached, args.backbone)
    runs = sorted(set(exact) & set(cached))
    if not runs:
        sys.exit(f"no run is in both {args.exact} and {args.cached}")
    metrics = [m for m in exact[runs[0]] if all(m in exact[r] and m in cached[r] for r in runs)]
    print(f"runs (one per seed): {', '.join(runs)}\n")
    print("| metric | exact | cached | cached − exact [95% over seeds] |\n|---|---|---|---|")
    for m in metrics:
        a, b = [exact[r][m] for r in runs], [cached[r][m] for r in runs]
        d = seed_interval([y - x for x, y in zip(a, b)])
        lo, hi = d["ci"]
        print(f"| {m} | {sum(a) / len(a):.4g} | {sum(b) / len(b):.4g} | {d['mean']:+.3g} [{lo:+.3g}, {hi:+.3g}] |")


if __name__ == "__main__":
    main()
