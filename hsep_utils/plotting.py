"""Image grids the notebooks save and show (matplotlib picks a headless backend by itself)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .io import save_figure, save_image
from .losses import LOSS_TERMS


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] → (N, H, W, 3) uint8."""
    return ((x.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def from_uint8(arr: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 → (N, 3, H, W) float in [-1, 1], the models' range (inverse of ``to_uint8``)."""
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def image_grid(rows: list[torch.Tensor], pad: int = 1, scale: int = 1) -> np.ndarray:
    """Stack equally sized batches as rows of one uint8 image (white padding)."""
    imgs = [to_uint8(r) for r in rows]
    n, h, w = max(len(r) for r in imgs), imgs[0].shape[1], imgs[0].shape[2]
    grid = np.full((len(imgs) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(imgs):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = img
    return grid.repeat(scale, 0).repeat(scale, 1) if scale > 1 else grid


def save_grid(rows: list[torch.Tensor], path: str | Path, scale: int = 1) -> np.ndarray:
    grid = image_grid(rows, scale=scale)
    save_image(grid, path)
    return grid


def show(grid: np.ndarray, title: str = "", width: float = 10):
    """Display a uint8 image in the notebook."""
    fig, ax = plt.subplots(figsize=(width, width * grid.shape[0] / grid.shape[1]))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    plt.show()


def plot_training(run_dir: str | Path, title: str = ""):
    """``loss_curves.png``: every loss term (mean per batch) and the validation swap success; with a
    latent warm-up (``warmup_log.csv``) first a panel of its terms (means over 100 updates); a warm-up-only
    recipe (``train_batches`` 0) has no ``train_log.csv`` and no per-step panel."""
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    val = pd.read_csv(run_dir / "val_log.csv")
    log = pd.read_csv(run_dir / "train_log.csv") if (run_dir / "train_log.csv").exists() else None
    warm = pd.read_csv(run_dir / "warmup_log.csv") if (run_dir / "warmup_log.csv").exists() else None
    panels = 1 + (log is not None) + (warm is not None)
    fig, axes = plt.subplots(1, panels, figsize=({1: 5.5, 2: 11, 3: 16}[panels], 3.5), squeeze=False)
    axes = list(axes[0])
    if warm is not None:
        per_100 = warm.groupby(warm["step"] // 100).mean(numeric_only=True)
        _plot_terms(axes[0], per_100["step"] + 1, per_100, f"{title} latent warm-up", "update",
                    "loss (mean over 100 updates)")
    if log is not None:
        per_batch = log.groupby(["epoch", "batch"], sort=False).mean(numeric_only=True).reset_index(drop=True)
        _plot_terms(axes[-2], per_batch.index + 1, per_batch, f"{title} training losses", "batch",
                    "loss (mean over timesteps)")
    b = axes[-1]
    for col in [c for c in ("sr_add", "sr_remove", "sr_min") if c in val]:
        b.plot(val["minutes"], val[col], marker="o", label=col)
    b.set(ylim=(-0.05, 1.05), xlabel="training minutes", ylabel="validation swap success", title="validation SR")
    if b.lines:  # a validation without swap success (no classifier) has nothing to show
        b.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, run_dir / "loss_curves.png", dpi=110)
    return fig


def _plot_terms(ax, x, frame: pd.DataFrame, title: str, xlabel: str, ylabel: str) -> None:
    """Every loss term present in ``frame`` (and the total) against ``x``, log scale."""
    for term in [c for c in LOSS_TERMS + ("total",) if c in frame]:
        ax.plot(x, frame[term], label=term, lw=2 if term == "total" else 1)
    ax.set(yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7, ncol=2)
