"""h-space access: a diffusers ``UNet2DModel`` split at its bottleneck.

h is the output of ``unet.mid_block`` (resnet → attention → resnet), as in Asyrp and the paper.
Splitting the forward pass into ``encode`` (conv_in, down blocks, mid block) and ``decode`` (up
blocks, output head) lets us replace h by h̃ without hooks, and run the encoder half under
``no_grad`` during training so the backward pass only crosses the decoder half.
``encode`` + ``decode`` reproduce ``UNet2DModel.forward`` exactly (a test checks it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

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
    """What the decoder half needs besides h: the time embedding and the skip connections."""

    h: torch.Tensor
    emb: torch.Tensor
    skips: tuple[torch.Tensor, ...]


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
    if problems:
        raise ValueError(f"unsupported UNet2DModel ({'; '.join(problems)}): hsep needs an unconditional "
                         f"DDPM-style UNet2DModel with a mid block")


def _timesteps(t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, device=x.device)
    return t.reshape(-1).to(torch.long).expand(x.shape[0]) if t.numel() == 1 else t.to(torch.long)


def encode(unet, x: torch.Tensor, t: torch.Tensor | int) -> Encoded:
    """The U-Net up to and including its mid block; ``t`` is a scalar or one timestep per image."""
    if unet.config.center_input_sample:
        x = 2 * x - 1.0
    t_emb = unet.time_proj(_timesteps(t, x)).to(dtype=unet.dtype)
    emb = unet.time_embedding(t_emb)
    sample = unet.conv_in(x)
    skips = (sample,)
    for block in unet.down_blocks:
        sample, res = block(hidden_states=sample, temb=emb)
        skips += res
    return Encoded(unet.mid_block(sample, emb), emb, skips)


def decode(unet, enc: Encoded, h: torch.Tensor | None = None) -> torch.Tensor:
    """The U-Net after its mid block, from ``h`` (default: the encoder's own h) to predicted noise."""
    sample = enc.h if h is None else h
    skips = enc.skips
    for block in unet.up_blocks:
        n = len(block.resnets)
        res, skips = skips[-n:], skips[:-n]
        sample = block(sample, res, enc.emb)
    return unet.conv_out(unet.conv_act(unet.conv_norm_out(sample)))


def h_shape(unet, batch: int = 1) -> tuple[int, ...]:
    """Shape of h for a batch of ``batch`` images at the model's sample size."""
    size = unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    ch = unet.config.block_out_channels[-1]
    down = sum(1 for b in unet.down_blocks if getattr(b, "downsamplers", None) is not None)
    return (batch, ch, size // 2**down, size // 2**down)
