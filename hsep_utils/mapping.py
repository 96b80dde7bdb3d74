"""The mapping network (§4, Fig. 3 and Fig. 8): h → Common C and Salient S → h̃.

Choices the paper leaves open, and what we do:
- Encoders see the timestep: a constant input plane t / 1000 is concatenated to h, because h's
  scale and content change strongly along the trajectory and one network serves every t.
- Each encoder is ``depth`` blocks of Conv3×3 + LeakyReLU(0.2) at h's channel count; the last
  block has no activation so codes can take any sign (h does).
- h is divided by a fixed scale (its RMS over training data, ``h_scale``) before the encoders
  and the output multiplied back, so one learning rate suits any base model.
- Fused(C, S) is Conv3×3 (2·channels → channels) + LeakyReLU(0.2); ``fusion_depth`` > 1 (beyond the
  paper) adds Conv3×3 + LeakyReLU blocks at h's channel count after it.
- The classification head (shared by C and S) is global average pooling + a linear layer to one
  logit; the KL head on C is a 1×1 conv to ``kl_bins`` logits, globally average-pooled.
- The optional class adversary on C (beyond the paper) reads pooled C through a linear layer
  (``adversary_head`` pooled), which only sees C's channel means, or C's map through
  Conv3×3 + LeakyReLU + Conv1×1 before pooling (conv), which also sees where things are.
"""
from __future__ import annotations

import torch
from torch import nn

ADVERSARY_HEADS = ("pooled", "conv")

ARCHITECTURES = {
    # name: (separate specific encoders per class, fused recombination)
    "a": (True, True),  # shared + two specific encoders, h̃ = C + Fused(C, S)
    "b": (True, False),  # shared + two specific encoders, h̃ = C + S
    "c": (False, True),  # shared + one salient encoder, h̃ = C + Fused(C, S)
    "d": (False, False),  # shared + one salient encoder, h̃ = C + S
}


class ConvEncoder(nn.Module):
    """``depth`` × (Conv3×3 + LeakyReLU 0.2); the last conv has no activation."""

    def __init__(self, channels: int, depth: int, time_input: bool = True) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be ≥ 1, got {depth}")
        self.time_input = time_input
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(nn.Conv2d(channels + (time_input if i == 0 else 0), channels, 3, padding=1))
            if i < depth - 1:
                layers.append(nn.LeakyReLU(0.2))
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.time_input:
            plane = (t.to(h.dtype) / 1000).view(-1, 1, 1, 1).expand(h.shape[0], 1, *h.shape[2:])
            h = torch.cat([h, plane], 1)
        return self.net(h)


class MappingNetwork(nn.Module):
    """Splits h into (C, S) and recombines them; architecture (a)–(d) of Fig. 8."""

    def __init__(self, channels: int, arch: str = "a", depth: int = 8, kl_bins: int = 16,
                 time_input: bool = True, h_scale: float = 1.0, adversary_head: str = "pooled",
                 fusion_depth: int = 1) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
        if adversary_head not in ADVERSARY_HEADS:
            raise ValueError(f"unknown adversary head {adversary_head!r}; known: {', '.join(ADVERSARY_HEADS)}")
        self.arch, self.channels, self.depth = arch, channels, depth
        self.two_specific, self.fused = ARCHITECTURES[arch]
        self.register_buffer("h_scale", torch.tensor(float(h_scale)))
        self.shared = ConvEncoder(channels, depth, time_input)
        n_specific = 2 if self.two_specific else 1
        self.specific = nn.ModuleList(ConvEncoder(channels, depth, time_input) for _ in range(n_specific))
        if int(fusion_depth) < 1:
            raise ValueError(f"fusion_depth must be ≥ 1, got {fusion_depth}")
        self.fusion_depth = int(fusion_depth)
        self.fusion = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1), nn.LeakyReLU(0.2), *[
            layer for _ in range(self.fusion_depth - 1) for layer in (nn.Conv2d(channels, channels, 3, padding=1),
                                                                      nn.LeakyReLU(0.2))]) if self.fused else None
        self.class_head = nn.Linear(channels, 1)
        self.kl_head = nn.Conv2d(channels, kl_bins, 1)
        self.adversary_head = adversary_head  # the adversary is only trained when TrainConfig.common_adversary > 0
        self.adversary = nn.Linear(channels, 1) if adversary_head == "pooled" else nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(channels, 1, 1))

    def config(self) -> dict:
        return dict(channels=self.channels, arch=self.arch, depth=self.depth, kl_bins=self.kl_head.out_channels,
                    time_input=self.shared.time_input, h_scale=float(self.h_scale), adversary_head=self.adversary_head,
                    fusion_depth=self.fusion_depth)

    def common(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.shared(h / self.h_scale, t)

    def salient(self, h: torch.Tensor, t: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
        """S from the class's specific encoder (arch a/b) or the one salient encoder (c/d)."""
        x = h / self.h_scale
        if not self.two_specific:
            return self.specific[0](x, t)
        # each class's encoder runs on that class's images only (half the work of running both on all)
        is_target = is_target.to(torch.bool).to(h.device)
        s = torch.empty_like(x)
        for cls, encoder in ((~is_target, self.specific[0]), (is_target, self.specific[1])):
            if cls.any():
                s[cls] = encoder(x[cls], t[cls])
        return s

    def split(self, h: torch.Tensor, t: torch.Tensor, is_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(t, device=h.device).expand(h.shape[0])
        return self.common(h, t), self.salient(h, t, is_target)

    def combine(self, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """h̃ = C + Fused(C, S) for (a)/(c), C + S for (b)/(d), back at h's scale."""
        mixed = c + (self.fusion(torch.cat([c, s], 1)) if self.fused else s)
        return mixed * self.h_scale

    def forward(self, h: torch.Tensor, t, is_target: torch.Tensor):
        c, s = self.split(h, t, is_target)
        return self.combine(c, s), c, s

    def class_logit(self, code: torch.Tensor) -> torch.Tensor:
        """The shared classification head: one logit per image ("has the target attribute")."""
        return self.class_head(code.mean((2, 3))).squeeze(1)

    def adversary_logit(self, c: torch.Tensor) -> torch.Tensor:
        """Class logit of C through a gradient-reversal layer: the adversary learns to tell the
        classes apart from C while the encoders learn to make C uninformative (beyond the paper)."""
        c = _ReverseGrad.apply(c)
        if self.adversary_head == "pooled":
            return self.adversary(c.mean((2, 3))).squeeze(1)
        return self.adversary(c).mean((1, 2, 3))

    def kl_logits(self, c: torch.Tensor) -> torch.Tensor:
        """The KL head on C: pooled logits (B, kl_bins)."""
        return self.kl_head(c).mean((2, 3))


def edited_h(net: MappingNetwork, h: torch.Tensor, c: torch.Tensor, s: torch.Tensor, s_new: torch.Tensor,
             residual: bool, c_new: torch.Tensor | None = None) -> torch.Tensor:
    """h̃ of an edit that gives (C, S), the codes of ``h``, the salient code ``s_new``: f(C, S′) in place of
    h (the paper), or with ``residual`` (beyond the paper) h + f(C, S′) − f(C, S), so that only the change
    of S edits and the network's error in reconstructing h cancels; ``c_new`` (beyond the paper,
    ``common_shift``): C′ in place of C in the new codes. What every edit, and the training terms that
    imitate one, recombine with."""
    mixed = net.combine(c if c_new is None else c_new, s_new)
    return h + mixed - net.combine(c, s) if residual else mixed


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad
