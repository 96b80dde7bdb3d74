"""h-space access: a diffusers ``UNet2DModel`` split at its bottleneck.

h is the output of ``unet.mid_block`` (resnet → attention → resnet), as in Asyrp and the paper.
Splitting the forward pass into ``encode`` (conv_in, down blocks, mid block) and ``decode`` (up
blocks, output head) lets us replace h by h̃ without hooks, and run the encoder half under
``no_grad`` during training so the backward pass only crosses the decoder half — and, inside it,
only the path from h (the skip connections are constants there; ``_resnet_constant_skip``).
``encode`` + ``decode`` reproduce ``UNet2DModel.forward`` exactly (a test checks it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.unets.unet_2d_blocks import AttnUpBlock2D, ResnetUpsampleBlock2D, UpBlock2D

# google/ddpm-ema-celebahq-256's UNet2DModel configuration: h is [B, 512, 8, 8] at 256 px.
CELEBAHQ_256_CONFIG = dict(
    sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
    act_fn="silu", attention_head_dim=None, center_input_sample=False, downsample_padding=0,
    flip_sin_to_cos=False, freq_shift=1, mid_block_scale_factor=1, norm_eps=1e-6, norm_num_groups=32,
    time_embedding_type="positional",
)


@dataclass
class Encoded:
    """What the decoder half needs besides h: the time embedding and the skip connections (in the
    U-Net's dtype), and the dtype of the input x, which h and the decoder's ε are given back in."""

    h: torch.Tensor
    emb: torch.Tensor
    skips: tuple[torch.Tensor, ...]
    dtype: torch.dtype = torch.float32

    def rows(self, index: torch.Tensor) -> "Encoded":
        """The same for a subset of the batch (boolean mask or indices)."""
        return Encoded(self.h[index], self.emb[index], tuple(s[index] for s in self.skips), self.dtype)


def check_supported(unet) -> None:
    """Raise for UNet2DModel variants whose forward we do not reproduce."""
    cfg = unet.config
    problems = []
    if unet.mid_block is None:
        problems.append("it has no mid block, so no h-space")
    if unet.class_embedding is not None:
        problems.append("it is class-conditional")
    if cfg.time_embedding_type == "fourier" or any(hasattr(b, "skip_conv") for b in unet.down_blocks):
        problems.append("it uses score-SDE skip blocks / Fourier time embedding")
    if cfg.out_channels not in (cfg.in_channels, 2 * cfg.in_channels):
        problems.append(f"it outputs {cfg.out_channels} channels for {cfg.in_channels} in (ε, or ε and a learned "
                        f"variance, are {cfg.in_channels} or {2 * cfg.in_channels})")
    if problems:
        raise ValueError(f"unsupported UNet2DModel ({'; '.join(problems)}): hsep needs an unconditional "
                         f"DDPM-style UNet2DModel with a mid block")


def _timesteps(t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, device=x.device)
    return t.reshape(-1).to(torch.long).expand(x.shape[0]) if t.numel() == 1 else t.to(torch.long)


def encode(unet, x: torch.Tensor, t: torch.Tensor | int) -> Encoded:
    """The U-Net up to and including its mid block; ``t`` is a scalar or one timestep per image. A
    U-Net of lower precision (``unet_dtype``) runs on x cast to it and gives h back in x's dtype."""
    dtype, x = x.dtype, x.to(unet.dtype)
    if unet.config.center_input_sample:
        x = 2 * x - 1.0
    t_emb = unet.time_proj(_timesteps(t, x)).to(dtype=unet.dtype)
    emb = unet.time_embedding(t_emb)
    sample = unet.conv_in(x)
    skips = (sample,)
    for block in unet.down_blocks:
        sample, res = block(hidden_states=sample, temb=emb)
        skips += res
    return Encoded(unet.mid_block(sample, emb).to(dtype), emb, skips, dtype)


def decode(unet, enc: Encoded, h: torch.Tensor | None = None, constant_skips: bool = True) -> torch.Tensor:
    """The U-Net after its mid block, from ``h`` (default: the encoder's own h) to predicted noise: the
    first ``in_channels`` of the output (a ``learn_sigma`` model's other half, its variance, is unused by DDIM).

    When a graph is recorded for ``h`` only (the frozen U-Net of training), each up block's resnets
    keep the constant skip connections out of the backward pass (``_resnet_constant_skip``);
    ``constant_skips=False`` runs diffusers' own blocks (the benchmark's reference)."""
    sample = (enc.h if h is None else h).to(unet.dtype)
    skips = enc.skips
    split = constant_skips and torch.is_grad_enabled() and sample.requires_grad
    for block in unet.up_blocks:
        n = len(block.resnets)
        res, skips = skips[-n:], skips[:-n]
        if split and _splittable(block, res):
            sample = _up_block_constant_skips(block, sample, res, enc.emb)
        else:
            sample = block(sample, res, enc.emb)
    return unet.conv_out(unet.conv_act(unet.conv_norm_out(sample)))[:, :unet.config.in_channels].to(enc.dtype)


def _splittable(block, res: tuple[torch.Tensor, ...]) -> bool:
    """True for a frozen UpBlock2D / AttnUpBlock2D / ResnetUpsampleBlock2D with constant skips (the
    training step's decoder half); anything else (a base model in training, FreeU) runs as is."""
    return (type(block) in (UpBlock2D, AttnUpBlock2D, ResnetUpsampleBlock2D) and not any(r.requires_grad for r in res)
            and not any(p.requires_grad for p in block.parameters()) and not getattr(block, "s1", None)
            and all(type(r) is ResnetBlock2D and r.upsample is None and r.downsample is None
                    and r.time_embedding_norm in ("default", "scale_shift") for r in block.resnets))


def _up_block_constant_skips(block, sample: torch.Tensor, res: tuple[torch.Tensor, ...],
                             emb: torch.Tensor) -> torch.Tensor:
    """``block(sample, res, emb)``, with each resnet run by ``_resnet_constant_skip``. Inputs are
    made contiguous: diffusers' attention returns channels-last tensors, and with a graph recorded
    the convolutions keep that layout, so every addition with an NCHW skip ran ~20× slower (0.2–1.5 s
    each at 256 px on the CPU, measured)."""
    attentions = getattr(block, "attentions", [None] * len(block.resnets))
    for resnet, attn in zip(block.resnets, attentions):
        res, skip = res[:-1], res[-1]
        sample = _resnet_constant_skip(resnet, sample.contiguous(), skip.contiguous(), emb)
        if attn is not None:
            sample = attn(sample)
    for upsampler in block.upsamplers or []:  # a conv upsampler, or an ADM-style ResBlock(up=True)
        sample = upsampler(sample, emb) if isinstance(upsampler, ResnetBlock2D) else upsampler(sample)
    return sample


def _resnet_constant_skip(resnet: ResnetBlock2D, x: torch.Tensor, skip: torch.Tensor,
                          temb: torch.Tensor) -> torch.Tensor:
    """``resnet(cat([x, skip]), temb)`` whose backward pass skips the skip connection's channels.

    Autograd through the concatenation computes conv1's and the shortcut's input gradient for
    every channel and then drops the skip's part: about a quarter of the decoder half's backward
    at 256 px. GroupNorm groups are independent, so norm1 → act → conv1 splits exactly at the first
    group boundary after x's channels: the groups before it (x and at most one group's worth of
    skip channels) keep their graph; the skip-only groups and the shortcut's skip half are
    constants computed without one. Same values and the same gradient w.r.t. ``x``.
    """
    norm, conv1, shortcut = resnet.norm1, resnet.conv1, resnet.conv_shortcut
    cx, c = x.shape[1], x.shape[1] + skip.shape[1]
    group = c // norm.num_groups
    cut = -(-cx // group) * group  # first group boundary at or after x's channels

    def act_norm(z: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        w = None if norm.weight is None else norm.weight[lo:hi]
        b = None if norm.bias is None else norm.bias[lo:hi]
        return resnet.nonlinearity(F.group_norm(z, (hi - lo) // group, w, b, norm.eps))

    mixed = x if cut == cx else torch.cat([x, skip[:, :cut - cx]], dim=1)
    hidden = conv1._conv_forward(act_norm(mixed, 0, cut), conv1.weight[:, :cut], None)
    with torch.no_grad():
        if cut < c:
            const = conv1._conv_forward(act_norm(skip[:, cut - cx:], cut, c), conv1.weight[:, cut:], conv1.bias)
        else:
            const = 0.0 if conv1.bias is None else conv1.bias[None, :, None, None]
        if shortcut is not None:
            short_skip = shortcut._conv_forward(skip, shortcut.weight[:, cx:], shortcut.bias)
    hidden = hidden + const
    if resnet.time_emb_proj is not None:
        temb = resnet.time_emb_proj(temb if resnet.skip_time_act else resnet.nonlinearity(temb))[:, :, None, None]
    if resnet.time_embedding_norm == "default":
        hidden = resnet.norm2(hidden if temb is None else hidden + temb)
    else:
        scale, shift = torch.chunk(temb, 2, dim=1)
        hidden = resnet.norm2(hidden) * (1 + scale) + shift
    hidden = resnet.conv2(resnet.dropout(resnet.nonlinearity(hidden)))
    if shortcut is None:
        short = torch.cat([x, skip], dim=1)
    else:
        short = shortcut._conv_forward(x, shortcut.weight[:, :cx], None) + short_skip
    return (short + hidden) / resnet.output_scale_factor


def h_shape(unet, batch: int = 1) -> tuple[int, ...]:
    """Shape of h for a batch of ``batch`` images at the model's sample size."""
    size = unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    ch = unet.config.block_out_channels[-1]
    down = sum(1 for b in unet.down_blocks if getattr(b, "downsamplers", None) is not None)
    return (batch, ch, size // 2**down, size // 2**down)
