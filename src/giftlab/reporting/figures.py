"""Paper figures drawn from small metric files written by earlier rules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from giftlab.config import beta_of, parse_run  # noqa: E402


def _save(fig, pdf: str | Path, png: str | Path) -> None:
    """Write both formats through temporary names so a killed job leaves no complete-looking figure."""
    for path in (Path(pdf), Path(png)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        tmp.replace(path)
    plt.close(fig)


def _by_backbone(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """Group result records by (backbone, run), read from the job config in their provenance."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for rec in records:
        job = rec["provenance"]["config"]
        out.setdefault(job["backbone"], {})[job["run"]] = rec
    return out


def fig1_data(sft_metrics: Sequence[Mapping[str, Any]], rl_evals: Sequence[Mapping[str, Any]]
              ) -> dict[str, dict[str, Any]]:
    """Per backbone: validation-loss curves per run, and post-RL pass@1 (with CI) per β."""
    data: dict[str, dict[str, Any]] = {}
    for bb, runs in _by_backbone(sft_metrics).items():
        curves = {run: ([e["epoch"] for e in m["epochs"]], [e["val_loss"] for e in m["epochs"]])
                  for run, m in runs.items()}
        data.setdefault(bb, {})["val_loss"] = curves
    for bb, runs in _by_backbone(rl_evals).items():
        points = []
        for run, summary in runs.items():
            points.append({"run": run, "method": parse_run(run)[0], "beta": beta_of(run),
                           "pass@1": summary["pass@1"], "ci": summary.get("pass@1_ci95") or [math.nan, math.nan]})
        data.setdefault(bb, {})["rl_pass1"] = sorted(points, key=lambda p: p["beta"])
    return data


def figure1(sft_metrics, rl_evals, backbones: Sequence[str], pdf, png, benchmark: str) -> dict:
    """Figure 1: (top) SFT validation loss per epoch; (bottom) post-RL pass@1 across β.

    Plain SFT is drawn as the β → ∞ reference line with its bootstrap interval.
    """
    data = fig1_data(sft_metrics, rl_evals)
    fig, axes = plt.subplots(2, len(backbones), figsize=(4.2 * len(backbones), 6.4), squeeze=False)
    for col, bb in enumerate(backbones):
        ax = axes[0][col]
        for run, (epochs, losses) in sorted(data.get(bb, {}).get("val_loss", {}).items(),
                                            key=lambda kv: beta_of(kv[0])):
            style = dict(color="black", lw=2) if parse_run(run)[0] == "sft" else dict(lw=1.2)
            ax.plot(epochs, losses, marker="o", label=run, **style)
        ax.set(title=f"({chr(97 + col)}) {bb}: SFT validation loss", xlabel="epoch", ylabel="val CE (nats/token)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(fontsize=7)
        ax = axes[1][col]
        points = data.get(bb, {}).get("rl_pass1", [])
        gift = [p for p in points if p["method"] == "gift"]
        if gift:
            xs = [p["beta"] for p in gift]
            ys = [p["pass@1"] for p in gift]
            err = [[y - p["ci"][0] for y, p in zip(ys, gift)], [p["ci"][1] - y for y, p in zip(ys, gift)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label="GIFT")
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.set_xlim(min(xs) * 0.5 if min(xs) > 0 else -0.5, max(xs) * 2)
        for p in points:
            if p["method"] == "sft":
                ax.axhline(p["pass@1"], color="black", ls="--", label="SFT (β→∞)")
                if not any(math.isnan(c) for c in p["ci"]):
                    ax.axhspan(p["ci"][0], p["ci"][1], color="black", alpha=0.08)
        ax.set(title=f"({chr(97 + len(backbones) + col)}) {bb}: pass@1 after RL ({benchmark})",
               xlabel="β (inverse temperature)", ylabel="pass@1")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, pdf, png)
    return data
