"""ArcFace IR-SE50: the identity network the paper's code scores ID with, as a judge apart from the
ID loss's facenet.

The layout is InsightFace's IR-SE50 as pixel2style2pixel (and Asyrp after it) ship it in
``model_ir_se50.pth``: a 3×3 stem (conv, BN, PReLU) at 112 px; 3 + 4 + 14 + 3 improved residual
units at 64 / 128 / 256 / 512 channels, the first of each stage with stride 2 (BN → conv 3×3 → PReLU
→ conv 3×3 (stride) → BN → squeeze-excitation with reduction 16; shortcut: identity as a 1×1 max
pool, or conv 1×1 + BN where the width changes); then BN → dropout → flatten → linear 512·7·7 → 512
→ BN, L2-normalised. Module names and order follow that file's keys, so it loads as saved. Faces
are prepared as the paper's code does: the 256 px image cropped to rows 35–223, columns 32–220 and
average-pooled to 112 px.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import Unavailable

STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))
"""(channels, units) of IR-SE50's four stages."""


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class ResidualUnit(nn.Module):
    """One improved residual unit with squeeze-excitation (``shortcut_layer``, ``res_layer``)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.shortcut_layer = nn.MaxPool2d(1, stride) if c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.res_layer = nn.Sequential(nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
                                       nn.PReLU(c_out), nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
                                       nn.BatchNorm2d(c_out), SqueezeExcite(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSE50(nn.Module):
    """112 px faces in [-1, 1] → unit-norm 512-d identity embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units, c_in = [], 64
        for c_out, n in STAGES:
            units += [ResidualUnit(c_in if i == 0 else c_out, c_out, 2 if i == 0 else 1) for i in range(n)]
            c_in = c_out
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.6), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=1)


def face_crop(x: torch.Tensor) -> torch.Tensor:
    """The paper's code's face region: resized to 256 px if needed, rows 35–223 and columns 32–220,
    average-pooled to 112 px."""
    if x.shape[-1] != 256 or x.shape[-2] != 256:
        x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
    return F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], 112)


def arcface_embedder(device: str | torch.device = "cpu", path: str | Path | None = None
                     ) -> Callable[[torch.Tensor], torch.Tensor] | Unavailable:
    """f_id of the ID metric on real presets: images in [-1, 1] → IR-SE50 embeddings, or
    ``Unavailable`` naming the file when ``model_ir_se50.pth`` is absent. A file of another layout
    is named with its first mismatching keys."""
    from .weights import arcface_file

    found = arcface_file(path)
    if isinstance(found, Unavailable):
        return found
    net = IRSE50()
    try:
        state = torch.load(found, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as e:
        raise ValueError(f"{found} does not load as IR-SE50 ({type(e).__name__}: {str(e)[:300]}): use the "
                         f"model_ir_se50.pth of pixel2style2pixel's 'Pretrained Models'") from None
    net = net.eval().requires_grad_(False).to(device)

    def embed(x: torch.Tensor) -> torch.Tensor:
        return net(face_crop(x.to(device)))

    embed.record = "ArcFace IR-SE50 (model_ir_se50.pth)"
    return embed
