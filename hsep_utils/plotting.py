"""Image grids the notebooks save and show (matplotlib picks a headless backend by itself)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from .io import save_image


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
