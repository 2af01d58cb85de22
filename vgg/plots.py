"""Figures: ours vs the paper, side by side."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .configs import CONFIGS  # noqa: E402
from .io import atomic_savefig  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write atomically (temp file + rename) at 120 dpi, and free the figure (rank 0 only
    under torchrun)."""
    from .runtime import rank_and_world
    fig.tight_layout()
    if rank_and_world()[0] == 0:
        atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)


def dense_penalty_figure(fig, axes, titles: list[str], xlabel: str, limit: float, suptitle: str,
                         path: str | Path) -> Path:
    """Finish panels of dense minus centre-crop error (one per net): the bound as a dashed line,
    zero, titles, labels, a legend in the first panel; then save."""
    for ax, title in zip(axes, titles):
        ax.axhline(limit, color="grey", ls="--", lw=1)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("dense minus centre-crop top-1 error (points)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{suptitle}; not ImageNet numbers; dashed: the {limit:g}-point bound", fontsize=10)
    return save_figure(fig, path)


def ours_vs_paper(df: pd.DataFrame, labels: list[str], path: str | Path, title: str, note: str = "") -> Path:
    """Grouped bars of top-1 and top-5 error per row: ours next to the paper's."""
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 0.9 * len(labels) + 4), 4.8), sharey=False)
    x = np.arange(len(labels))
    for ax, k in zip(axes, ("top1", "top5")):
        ours = pd.to_numeric(df[f"ours_{k}_err"], errors="coerce").to_numpy(dtype=float)
        paper = pd.to_numeric(df[f"paper_{k}_err"], errors="coerce").to_numpy(dtype=float)
        ax.bar(x - 0.2, paper, 0.4, label="paper (ImageNet)", color="#9db4d0")
        ax.bar(x + 0.2, ours, 0.4, label="ours", color="#d9822b")
        for xi, v in zip(x + 0.2, ours):
            if np.isfinite(v):
                ax.text(xi, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
        if k == "top1" and "ours_top1_err_seed_sd" in df:  # seed spread where seeds.csv has the net
            mean = pd.to_numeric(df["ours_top1_err_seed_mean"], errors="coerce").to_numpy(dtype=float)
            sd = pd.to_numeric(df["ours_top1_err_seed_sd"], errors="coerce").to_numpy(dtype=float)
            ax.errorbar(x + 0.2, mean, yerr=sd, fmt="o", color="black", ms=3, capsize=3,
                        label="ours: mean +- sd over seeds")
        ax.set_xticks(x, labels, rotation=40, ha="right", fontsize=8)
        ax.set_ylabel(f"{'top-1' if k == 'top1' else 'top-5'} error (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)
    return save_figure(fig, path)


STAGES = {"256": "S=256 (from scratch or net A)", "384": "S=384 (fine-tuned)", "256-512": "S=256-512 jitter"}


def training_curves(logs: dict[str, pd.DataFrame], path: str | Path, title: str) -> Path:
    """One panel per config: validation (solid) and training (dashed) top-1 error per epoch,
    each fine-tuning stage drawn after the stage it starts from."""
    by_config: dict[str, dict[str, pd.DataFrame]] = {}
    for name, log in logs.items():
        config, scale = name.rsplit("_S", 1)
        by_config.setdefault(config, {})[scale] = log
    order = list(CONFIGS)
    by_config = dict(sorted(by_config.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    n = len(by_config)
    cols = min(4, max(n, 1))
    rows = -(-n // cols) if n else 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False, sharey=True)
    for ax, (config, stages) in zip(axes.flat, by_config.items()):
        offset = 0
        for k, (scale, label) in enumerate(STAGES.items()):
            if scale not in stages:
                continue
            log = stages[scale]
            x = offset + log["epoch"]
            colour = f"C{k}"
            ax.plot(x, 100 * log["val_top1_err"], marker="o", ms=3, color=colour, label=f"{label}, val")
            ax.plot(x, 100 * log["train_top1_err"], ls="--", color=colour, alpha=0.7, label=f"{label}, train")
            offset = int(x.max())
        ax.set_title(config, fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("top-1 error (%)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes.flat), key=lambda hl: len(hl[0]))
    fig.legend(handles, labels, loc="lower right", fontsize=7, ncol=1 if n % cols else 3)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def table_image(df: pd.DataFrame, path: str | Path, title: str, col_widths: list[float] | None = None) -> Path:
    """A table rendered as an image (Tables 1 and 2)."""
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(df.columns)), 0.3 * len(df) + 1.2))
    ax.axis("off")
    cells = df.astype(object).where(df.notna(), "–").astype(str).values  # blanks as a dash, not "nan"
    t = ax.table(cellText=cells, colLabels=list(df.columns), loc="center", cellLoc="center",
                 colWidths=col_widths)
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.scale(1, 1.4)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
