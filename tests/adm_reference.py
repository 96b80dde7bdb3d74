"""An independent forward pass of the guided-diffusion (ADM) U-Net, written from the architecture's
description with plain tensor ops, over a state dict in the original key layout.

It shares nothing with ``hsep_utils.adm``: the converter is judged against it. Run with
``Weights(generator)`` it also creates the random weights (every parameter made where the forward
first reads it, so the layout and the forward cannot disagree).

    ResBlock: GroupNorm(32) → SiLU → [nearest ×2 | avg-pool /2 on both paths when up / down] → conv3×3;
              emb: SiLU → linear → (scale, shift) with h = GN(h)·(1 + scale) + shift, or h + emb;
              → SiLU → conv3×3; plus the input (1×1 conv when the width changes)
    AttentionBlock: x + proj_out(attention(qkv(GN(x)))), heads of the legacy [q k v]-per-head order or
              the new [all q, all k, all v] order, softmax(q·k / √ch)
    U-Net: input_blocks (conv, then per level ResBlocks [+ attention], then a down ResBlock or strided
           conv), middle_block (ResBlock, attention, ResBlock) = h, output_blocks (ResBlock on the
           concatenated skip [+ attention] [+ up ResBlock or nearest ×2 + conv]), out (GN, SiLU, conv)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TinyAdm:
    """Flags of a tiny ADM model (the same names as guided-diffusion's)."""

    image_size: int = 16
    num_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (8,)  # feature-map sizes with attention
    num_head_channels: int = 32
    num_heads: int = 4
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    use_new_attention_order: bool = False
    learn_sigma: bool = True

    def as_flags(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Weights(dict):
    """Parameters by ADM name; with a generator, a missing one is created with the shape asked for."""

    def __init__(self, state=None, generator: torch.Generator | None = None):
        super().__init__(state or {})
        self.generator = generator

    def get_param(self, name: str, shape: tuple[int, ...], kind: str) -> torch.Tensor:
        if name not in self:
            assert self.generator is not None, f"checkpoint lacks {name}"
            r = torch.randn(shape, generator=self.generator, dtype=torch.float64)
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            self[name] = {"norm": 1 + 0.2 * r, "bias": 0.2 * r}.get(kind, r / math.sqrt(fan_in))
        return self[name]


def _conv(w: Weights, name: str, x: torch.Tensor, cout: int, k: int = 3, stride: int = 1) -> torch.Tensor:
    dims = x.dim() - 2
    weight = w.get_param(f"{name}.weight", (cout, x.shape[1]) + (k,) * dims, "weight")
    bias = w.get_param(f"{name}.bias", (cout,), "bias")
    op = F.conv2d if dims == 2 else F.conv1d
    return op(x, weight, bias, stride=stride, padding=k // 2)


def _linear(w: Weights, name: str, x: torch.Tensor, cout: int) -> torch.Tensor:
    return F.linear(x, w.get_param(f"{name}.weight", (cout, x.shape[1]), "weight"), w.get_param(f"{name}.bias", (cout,), "bias"))


def _norm(w: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    return F.group_norm(x, 32, w.get_param(f"{name}.weight", (c,), "norm"), w.get_param(f"{name}.bias", (c,), "bias"), 1e-5)


def res_block(w: Weights, name: str, x, emb, cout: int, cfg: TinyAdm, up: bool = False, down: bool = False):
    h = F.silu(_norm(w, f"{name}.in_layers.0", x))
    if up:
        h, x = (F.interpolate(v, scale_factor=2, mode="nearest") for v in (h, x))
    if down:
        h, x = (F.avg_pool2d(v, 2) for v in (h, x))
    h = _conv(w, f"{name}.in_layers.2", h, cout)
    e = _linear(w, f"{name}.emb_layers.1", F.silu(emb), 2 * cout if cfg.use_scale_shift_norm else cout)[..., None, None]
    if cfg.use_scale_shift_norm:
        scale, shift = e.chunk(2, dim=1)
        h = _norm(w, f"{name}.out_layers.0", h) * (1 + scale) + shift
    else:
        h = _norm(w, f"{name}.out_layers.0", h + e)
    h = _conv(w, f"{name}.out_layers.3", F.silu(h), cout)
    skip = x if x.shape[1] == cout else _conv(w, f"{name}.skip_connection", x, cout, k=1)
    return skip + h


def attention_block(w: Weights, name: str, x: torch.Tensor, cfg: TinyAdm) -> torch.Tensor:
    b, c, *spatial = x.shape
    seq = x.reshape(b, c, -1)
    heads = c // cfg.num_head_channels if cfg.num_head_channels > 0 else cfg.num_heads
    ch = c // heads
    qkv = _conv(w, f"{name}.qkv", _norm(w, f"{name}.norm", seq), 3 * c, k=1)
    if cfg.use_new_attention_order:
        q, k, v = (p.reshape(b * heads, ch, -1) for p in qkv.chunk(3, dim=1))
    else:
        q, k, v = qkv.reshape(b * heads, 3 * ch, -1).split(ch, dim=1)
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(ch), dim=-1)
    a = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, -1)
    return (seq + _conv(w, f"{name}.proj_out", a, c, k=1)).reshape(b, c, *spatial)


def forward(w: Weights, cfg: TinyAdm, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(model output, h = the middle block's output) for images x at timesteps t."""
    mc = cfg.num_channels
    half = mc // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # in float32, as guided-diffusion's timestep_embedding
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(x.dtype)
    emb = _linear(w, "time_embed.2", F.silu(_linear(w, "time_embed.0", emb, 4 * mc)), 4 * mc)
    attn_ds = {cfg.image_size // r for r in cfg.attention_resolutions}

    hs, k, ds = [_conv(w, "input_blocks.0.0", x, mc)], 1, 1
    for level, mult in enumerate(cfg.channel_mult):
        for _ in range(cfg.num_res_blocks):
            h = res_block(w, f"input_blocks.{k}.0", hs[-1], emb, mult * mc, cfg)
            if ds in attn_ds:
                h = attention_block(w, f"input_blocks.{k}.1", h, cfg)
            hs.append(h)
            k += 1
        if level != len(cfg.channel_mult) - 1:
            if cfg.resblock_updown:
                hs.append(res_block(w, f"input_blocks.{k}.0", hs[-1], emb, hs[-1].shape[1], cfg, down=True))
            else:
                hs.append(_conv(w, f"input_blocks.{k}.0.op", hs[-1], hs[-1].shape[1], stride=2))
            k, ds = k + 1, ds * 2

    c = hs[-1].shape[1]
    h = res_block(w, "middle_block.0", hs[-1], emb, c, cfg)
    h = attention_block(w, "middle_block.1", h, cfg)
    mid = h = res_block(w, "middle_block.2", h, emb, c, cfg)

    k = 0
    for level, mult in reversed(list(enumerate(cfg.channel_mult))):
        for i in range(cfg.num_res_blocks + 1):
            h = res_block(w, f"output_blocks.{k}.0", torch.cat([h, hs.pop()], dim=1), emb, mult * mc, cfg)
            n = 1
            if ds in attn_ds:
                h = attention_block(w, f"output_blocks.{k}.1", h, cfg)
                n = 2
            if level and i == cfg.num_res_blocks:
                if cfg.resblock_updown:
                    h = res_block(w, f"output_blocks.{k}.{n}", h, emb, h.shape[1], cfg, up=True)
                else:
                    h = _conv(w, f"output_blocks.{k}.{n}.conv", F.interpolate(h, scale_factor=2, mode="nearest"), h.shape[1])
                ds //= 2
            k += 1
    out = _conv(w, "out.2", F.silu(_norm(w, "out.0", h)), 3 * (2 if cfg.learn_sigma else 1))
    return out, mid


def random_state(cfg: TinyAdm, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 weights in the ADM key layout (created by one reference pass)."""
    w = Weights(generator=torch.Generator().manual_seed(seed))
    forward(w, cfg, torch.zeros(1, 3, cfg.image_size, cfg.image_size, dtype=torch.float64), torch.zeros(1))
    return {k: v.float() for k, v in w.items()}


def save_tiny_checkpoint(path, cfg: TinyAdm = TinyAdm(), seed: int = 0):
    """A tiny ADM checkpoint file as guided-diffusion saves one (a plain state dict), and its flags."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_state(cfg, seed), path)
    return path
