"""Edits of a preset's splits, image i of one class paired with image i of the other: what
validation, the choice of α and the tables all measure. Under data parallelism each process edits
its share and every process gets all edits back; each generates ``cache.batch_size`` images at a
time (the preset's ``eval_batch_size``). The donors' S comes from their h trajectories, which the
cache keeps beside their inversions: one generation per donor for every later edit, however many
checkpoints and salient strengths are edited; so do the images' states entering the edit window
(below ``t_edit_max``): the unedited steps above it run once per image, not in every edit."""
from __future__ import annotations

import torch

from .common_shift import CommonShift
from .diffusion import Diffusion
from .distributed import ranks
from .donor_prior import DonorPrior
from .edit import edit, swap_salient
from .images import Images
from .mapping import MappingNetwork
from .metrics import psnr_per_image
from .splits import Split
from .train import InversionCache


def edit_pairs(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, bg: Split, tg: Split,
               n_steps: int, t_edit: int, n: int | None = None,
               asymmetric: bool = True, alpha: float = 1.0,
               remove: bool = True, t_edit_max: int | None = None, residual: bool = False,
               removal_strength: float = 1.0, add: bool = True,
               donor_prior: DonorPrior | None = None,
               edit_mask: float = 0.0,
               common_shift: CommonShift | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Background i takes target i's S (times ``alpha``, from its stored h trajectory); target i
    takes S = 0 (S′ = (1 − ``removal_strength``)·S). With ``remove`` False only adding (the second is
    None), with ``add`` False only removing (the first is None); ``residual``, ``donor_prior``, ``edit_mask``,
    ``common_shift``: ``edit``'s. Under data parallelism each process edits its share and every process gets all edits back."""
    n = min(len(bg.x), len(tg.x)) if n is None else n
    r = ranks()
    part = r.share(n)
    if part.start == part.stop:  # more processes than images
        none = torch.empty(0, *bg.x.shape[1:])
        return r.gather(none) if add else None, r.gather(none) if remove else None
    keys_bg, keys_tg, x_bg, x_tg = bg.keys[:n][part], tg.keys[:n][part], bg.x[:n][part], tg.x[:n][part]
    added, removed, b = [], [], cache.batch_size
    window = t_edit_max is not None  # the unedited steps above the window: generated once per image, kept

    def start(keys: list[str], x) -> torch.Tensor:
        return cache.window_start(keys, x, t_edit_max) if window else cache(keys, x)

    for i in range(0, len(keys_bg), b):  # a chunk's donor trajectories at a time: bounded memory at any size
        sl = slice(i, i + b)
        h_tg = cache.h_trajectories(keys_tg[sl], x_tg[sl], t_edit_max) if add else None
        a, rm = swap_salient(diffusion, net.eval(), start(keys_bg[sl], x_bg[sl]) if add else None,
                             start(keys_tg[sl], x_tg[sl]), n_steps, t_edit, alpha, asymmetric, remove, b,
                             h_tg, t_edit_max, residual, removal_strength, add, from_window=window,
                             donor_prior=donor_prior, edit_mask=edit_mask, common_shift=common_shift)
        added.append(a.cpu() if add else None)
        removed.append(rm.cpu() if remove else None)
    return r.gather(torch.cat(added)) if add else None, r.gather(torch.cat(removed)) if remove else None


def reconstruction_psnr(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, bg: Split, tg: Split,
                        n_steps: int, t_edit: int, asymmetric: bool = True, n_per_class: int | None = None,
                        t_edit_max: int | None = None) -> float:
    """Mean PSNR (dB) of both classes' images (the first ``n_per_class`` of each; None: all)
    reconstructed through the mapping network (own C and S); split across processes under data
    parallelism."""
    r = ranks()
    k_bg, k_tg = (len(s.x) if n_per_class is None else min(n_per_class, len(s.x)) for s in (bg, tg))
    x, keys = Images.concat([bg.x[:k_bg], tg.x[:k_tg]]), bg.keys[:k_bg] + tg.keys[:k_tg]
    is_target = torch.arange(len(x)) >= k_bg
    part = r.share(len(x))
    psnr = torch.empty(0)
    if part.start < part.stop:
        rec = edit(diffusion, net.eval(), cache(keys[part], x[part]), is_target[part], n_steps, "reconstruct",
                   t_edit, asymmetric=asymmetric, batch_size=cache.batch_size, t_edit_max=t_edit_max).cpu()
        psnr = psnr_per_image(rec, x[part].load())
    return r.gather(psnr).mean().item()
