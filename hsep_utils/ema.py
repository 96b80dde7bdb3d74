"""Exponential moving average of a network's weights: what the base DDPM exports and, optionally,
what the mapping network is evaluated with (``TrainConfig.ema_decay``)."""
from __future__ import annotations

import torch


@torch.no_grad()
def ema_update(ema_params: list[torch.Tensor], params: list[torch.Tensor], decay: float, step: int) -> None:
    """Move ``ema_params`` toward ``params`` after optimiser step ``step`` (0-based), with the
    usual warm-up ``min(decay, (1 + step) / (10 + step))`` so that early weights fade fast."""
    torch._foreach_lerp_(ema_params, params, 1 - min(decay, (1 + step) / (10 + step)))
