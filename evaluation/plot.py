"""Recall against throughput for an evaluation sweep, as a PNG."""

from __future__ import annotations

from pathlib import Path

from evaluation.fidelity import Sweep


def plot_sweep(sweep: Sweep, k: int, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for refine in sorted({r.setting.refine for r in sweep.results}):
        rows = sorted((r for r in sweep.results if r.setting.refine == refine),
                      key=lambda r: r.setting.nprobe or 0)
        label = "no re-ranking" if refine == 1 else f"exact re-ranking of {refine}k"
        ax.plot([r.batch_qps for r in rows], [r.k_recall[k] for r in rows], marker="o",
                label=label)
        for r in rows:
            if r.setting.nprobe is not None:
                ax.annotate(str(r.setting.nprobe), (r.batch_qps, r.k_recall[k]),
                            textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = [r for r in sweep.results if r.pareto]
    ax.scatter([r.batch_qps for r in front], [r.k_recall[k] for r in front], s=120,
               facecolors="none", edgecolors="black", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("queries per second (batched)")
    ax.set_ylabel(f"{k}-recall@{k}")
    ax.set_title(title + "\nlabels: nprobe", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
