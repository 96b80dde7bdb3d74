"""Edits of a preset's splits, image i of one class paired with image i of the other: what
validation, the choice of α and the tables all measure. Under data parallelism each process edits
its share and every process gets all edits back; each generates ``cache.batch_size`` images at a
time (the preset's ``eval_batch_size``)."""
from __future__ import annotations

import torch

from .diffusion import Diffusion
from .distributed import ranks
from .edit import edit, swap_salient
from .images import Images
from .mapping import MappingNetwork
from .metrics import psnr_per_image
from .splits import Split
from .train import InversionCache


def edit_pairs(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, bg: Split, tg: Split,
               n_steps: int, t_edit: int, n: int | None = None,
               asymmetric: bool = True, alpha: float = 1.0,
               remove: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Background i takes target i's S (times ``alpha``); target i takes S = 0 (with ``remove``
    False: only adding, the second is None). Under data parallelism each process edits its share and
    every process gets all edits back."""
    n = min(len(bg.x), len(tg.x)) if n is None else n
    r = ranks()
    part = r.share(n)
    if part.start == part.stop:  # more processes than images
        none = torch.empty(0, *bg.x.shape[1:])
        return r.gather(none), r.gather(none) if remove else None
    keys_bg, keys_tg = bg.keys[:n][part], tg.keys[:n][part]
    xT_bg, xT_tg = cache(keys_bg, bg.x[:n][part]), cache(keys_tg, tg.x[:n][part])
    added, removed = swap_salient(diffusion, net.eval(), xT_bg, xT_tg, n_steps, t_edit, alpha, asymmetric, remove,
                                  cache.batch_size)
    return r.gather(added.cpu()), r.gather(removed.cpu()) if remove else None


def reconstruction_psnr(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, bg: Split, tg: Split,
                        n_steps: int, t_edit: int, asymmetric: bool = True) -> float:
    """Mean PSNR (dB) of both classes' images reconstructed through the mapping network (own C and
    S); split across processes under data parallelism."""
    r = ranks()
    x, keys = Images.concat([bg.x, tg.x]), bg.keys + tg.keys
    is_target = torch.arange(len(x)) >= len(bg.x)
    part = r.share(len(x))
    psnr = torch.empty(0)
    if part.start < part.stop:
        rec = edit(diffusion, net.eval(), cache(keys[part], x[part]), is_target[part], n_steps, "reconstruct",
                   t_edit, asymmetric=asymmetric, batch_size=cache.batch_size).cpu()
        psnr = psnr_per_image(rec, x[part].load())
    return r.gather(psnr).mean().item()
