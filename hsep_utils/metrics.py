"""Image metrics. A metric whose pretrained weights are absent is ``Unavailable`` with the reason
and the exact file to place, never a number from a randomly initialised backbone."""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch


@dataclass(frozen=True)
class Unavailable:
    """Why a metric was not computed; shown in tables instead of a number."""

    reason: str

    def __str__(self) -> str:
        return f"unavailable: {self.reason}"


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] → [0, 1], clamped."""
    return ((x + 1) / 2).clamp(0, 1)


def mse_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, on pixels in [0, 1] (inputs in [-1, 1])."""
    return (to_unit(a) - to_unit(b)).pow(2).flatten(1).mean(1)


def psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image, peak 1; identical images give +inf."""
    return 10 * torch.log10(1 / mse_per_image(a, b))


def rate_lower_bound(rate: float, n: int, confidence: float) -> float:
    """What a success rate measured on ``n`` images is at least, with one-sided ``confidence``
    (Wilson score bound): the first α whose measured SR crosses a bar overstates its SR on fresh
    images (the winner's curse); its bound does not. ``confidence`` 0.5 gives ``rate`` itself; NaN
    when nothing was counted."""
    if n == 0 or math.isnan(rate):
        return math.nan
    z = NormalDist().inv_cdf(confidence)
    z2n = z * z / n
    return (rate + z2n / 2 - z * math.sqrt(rate * (1 - rate) / n + z2n / (4 * n))) / (1 + z2n)


@torch.no_grad()
def lpips_per_image(model, a: torch.Tensor, b: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """LPIPS per image for inputs in [-1, 1]."""
    dev = next(model.parameters()).device
    out = [model(x.to(dev), y.to(dev)).flatten().cpu() for x, y in zip(a.split(batch_size), b.split(batch_size))]
    return torch.cat(out)
