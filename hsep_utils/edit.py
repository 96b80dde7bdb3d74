"""Edits with a trained mapping network (Eq. 4), in chunks of ``batch_size`` images.

At every step t ≥ t_edit (and t < t_edit_max when given) the edited images use h̃ = f(C, α·S′): C from their own h, S′ their own S
(reconstruct), zero (remove) or a donor's S at the same timestep (swap); or, ``residual``,
h + f(C, α·S′) − f(C, S). Removing at strength β takes S′ = (1 − β)·S: β = 1 is S = 0. Donors are generated in
the same batch from their own inversions, with their original h, so their S at step t comes from
the trajectory they would follow unedited; or that trajectory's h is given (``donor_h``), stored
once per donor (``InversionCache.h_trajectories``) instead of generated again for every edit. A
``donor_prior`` (beyond the paper, ``donor_prior.DonorPrior``) pulls a donor's S toward the training
targets' mean before the swap takes it; a ``common_shift`` (beyond the paper, ``common_shift.CommonShift``)
moves a removal's C by the difference of the classes' mean C.
"""
from __future__ import annotations

import torch

from .common_shift import CommonShift
from .diffusion import Diffusion
from .donor_prior import DonorPrior
from .mapping import MappingNetwork, edited_h

MODES = ("reconstruct", "remove", "swap")


def check_compatible(net_config: dict, diffusion: Diffusion, fix: str = "use the mapping checkpoint trained "
                     "with this base model, or train one (notebook 02)") -> None:
    """A mapping network only works on the h-space it was trained on: h's channel count must match."""
    channels = diffusion.unet.config.block_out_channels[-1]
    if net_config["channels"] != channels:
        size = diffusion.sample_size // 2 ** (len(diffusion.unet.config.block_out_channels) - 1)
        raise ValueError(f"the mapping network ({net_config}) was trained on h with {net_config['channels']} channels, "
                         f"but base model {diffusion.source or '(unnamed)'} gives h of shape "
                         f"[B, {channels}, {size}, {size}]: {fix}")


@torch.no_grad()
def edit(diffusion: Diffusion, net: MappingNetwork, xT: torch.Tensor, is_target: torch.Tensor, n_steps: int,
         mode: str = "reconstruct", t_edit: int = 0, donor_xT: torch.Tensor | None = None,
         donor_is_target: torch.Tensor | None = None, alpha: float = 1.0, asymmetric: bool = True,
         batch_size: int | None = None, donor_h: torch.Tensor | None = None,
         t_edit_max: int | None = None, residual: bool = False, from_window: bool = False,
         donor_prior: DonorPrior | None = None, edit_mask: float = 0.0,
         common_shift: CommonShift | None = None) -> torch.Tensor:
    """Generate edited images from inverted latents ``xT`` (N, 3, H, W); returns (N, 3, H, W).
    ``alpha``: the strength of the edit — S′ = α·(own S) reconstructing, α·(donor's S) swapping, and
    (1 − α)·(own S) removing (α = 1: S = 0, the paper's removal; α > 1 goes past it).
    ``asymmetric``: the reverse process of ``Diffusion.generate`` (the paper's Eq. 4 by default).
    ``batch_size``: images per generation (a swap's donors ride along with their images); None: all.
    ``donor_h`` (swap, instead of ``donor_xT``): the donors' h along their unedited generation,
    (N, n_steps, C, H, W) in generation order (``InversionCache.h_trajectories``): a swap then
    generates only its images, half the U-Net passes of generating the donors beside them.
    ``residual`` (beyond the paper): h + f(C, α·S′) − f(C, S) instead of f(C, α·S′), so the mapping
    network's reconstruction error of h cancels and only the change of S edits the image.
    ``from_window``: ``xT`` (and ``donor_xT``) are the states entering the edit window, the first step
    with t < ``t_edit_max``, of the images' unedited generations (``InversionCache.window_start``).
    ``donor_prior`` (swap): the donors' S pulled toward the training targets' mean first (``DonorPrior.pull``).
    ``edit_mask`` (beyond the paper; 0: off): the edit changes ε only where it changes it most (``Diffusion.generate``).
    ``common_shift`` (remove): C′ = C + λ·ΔC̄_t in place of the targets' C (``CommonShift.move``)."""
    if mode not in MODES:
        raise ValueError(f"unknown edit mode {mode!r}; known: {', '.join(MODES)}")
    if from_window and t_edit_max is None:
        raise ValueError("from_window needs t_edit_max: the states enter the window below it")
    check_compatible(net.config(), diffusion)
    n = len(xT)
    donors = donor_xT if donor_h is None else donor_h
    if mode == "swap" and (donors is None or donor_is_target is None or len(donors) != n):
        raise ValueError("swap needs donor_xT (or donor_h) and donor_is_target, one donor per image")
    if batch_size is not None and n > batch_size:
        part = lambda v, i: None if v is None else v[i:i + batch_size]  # noqa: E731
        return torch.cat([edit(diffusion, net, xT[i:i + batch_size], is_target[i:i + batch_size], n_steps, mode, t_edit,
                               part(donor_xT, i), part(donor_is_target, i), alpha, asymmetric, None, part(donor_h, i),
                               t_edit_max, residual, from_window, donor_prior, edit_mask, common_shift)
                          for i in range(0, n, batch_size)])
    cls = is_target.to(torch.bool).to(xT.device)
    riding = mode == "swap" and donor_h is None  # the donors are generated in the same batch
    if mode == "swap":
        cls = torch.cat([cls, donor_is_target.to(torch.bool).to(xT.device)])
    if riding:
        xT = torch.cat([xT, donor_xT.to(xT.device)])
    step = {t: i for i, t in enumerate(reversed(diffusion.timesteps(n_steps)))}  # donor_h's order

    def edit_fn(h: torch.Tensor, t: int) -> torch.Tensor:
        if mode == "swap" and not riding:
            h = torch.cat([h, donor_h[:, step[t]].to(h)])
        c, s = net.split(h, t, cls)
        donor_s = s[n:] if donor_prior is None or mode != "swap" else donor_prior.pull(s[n:], t)
        s_new = {"reconstruct": alpha * s[:n], "remove": (1 - alpha) * s[:n], "swap": alpha * donor_s}[mode]
        c_new = common_shift.move(c[:n], t) if common_shift is not None and mode == "remove" else None
        mixed = edited_h(net, h[:n], c[:n], s[:n], s_new, residual, c_new)
        return torch.cat([mixed, h[n:]]) if riding else mixed

    return diffusion.generate(xT, n_steps, edit_fn=edit_fn, t_edit=t_edit, asymmetric=asymmetric,
                              t_edit_max=t_edit_max, start_below=t_edit_max if from_window else None,
                              edit_mask=edit_mask)[:n]


@torch.no_grad()
def swap_salient(diffusion: Diffusion, net: MappingNetwork, xT_bg: torch.Tensor, xT_tg: torch.Tensor, n_steps: int,
                 t_edit: int = 0, alpha: float = 1.0, asymmetric: bool = True, remove: bool = True,
                 batch_size: int | None = None,
                 h_tg: torch.Tensor | None = None, t_edit_max: int | None = None, residual: bool = False,
                 removal_strength: float = 1.0, add: bool = True,
                 from_window: bool = False,
                 donor_prior: DonorPrior | None = None,
                 edit_mask: float = 0.0,
                 common_shift: CommonShift | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The paper's swap: background images take the paired target's S (attribute added, S′ = α·S_target); target
    images take S = 0 (attribute removed; with ``removal_strength`` β, S′ = (1 − β)·S). Returns (edited
    backgrounds, edited targets); with ``remove`` False the targets are only donors and the second is
    None, with ``add`` False the first. ``h_tg``: the targets' h along their unedited generation
    (``edit``'s ``donor_h``), when already at hand. ``residual``, ``from_window``, ``donor_prior``, ``edit_mask``,
    ``common_shift``: ``edit``'s."""
    tg = torch.ones(len(xT_tg), dtype=torch.bool)
    added = removed = None
    if add:
        bg = torch.zeros(len(xT_bg), dtype=torch.bool)
        added = edit(diffusion, net, xT_bg, bg, n_steps, "swap", t_edit, None if h_tg is not None else xT_tg, tg, alpha,
                     asymmetric, batch_size, h_tg, t_edit_max, residual, from_window, donor_prior, edit_mask)
    if remove:
        removed = edit(diffusion, net, xT_tg, tg, n_steps, "remove", t_edit, alpha=removal_strength,
                       asymmetric=asymmetric, batch_size=batch_size, t_edit_max=t_edit_max, residual=residual,
                       from_window=from_window, edit_mask=edit_mask, common_shift=common_shift)
    return added, removed
