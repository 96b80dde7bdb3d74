"""Fig. 6/7: the grids of notebook 03."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .common_shift import CommonShift
from .datasets import toy_counterfactuals
from .diffusion import Diffusion
from .donor_prior import DonorPrior
from .edit import edit, swap_salient
from .mapping import MappingNetwork
from .parameters import edit_settings, is_asymmetric
from .plotting import save_grid
from .splits import Split
from .strength import salient_strength
from .train import InversionCache


def qualitative_grids(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, data: dict[str, Split],
                      params: dict, out_dir: str | Path, n: int = 8,
                      alphas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
                      donor_prior: DonorPrior | None = None,
                      common_shift: CommonShift | None = None) -> dict[str, np.ndarray]:
    """Fig. 6/7: rows original / reconstruction / edit (/ true counterfactual on toy presets), for
    adding the attribute to backgrounds (S from the paired target, times the preset's
    ``salient_strength``) and removing it from targets (S′ = (1 − β)·S, β the preset's
    ``removal_strength``; 1: S = 0), both in the preset's ``edit_form``; plus an S-strength strip
    h̃ = f(C, α·S) for one background with a target's S; the swaps' donor S pulled by ``donor_prior``, the
    removals' C moved by ``common_shift`` when given."""
    out_dir, steps, t_edit, asym = Path(out_dir), params["ddim_steps"], params["t_edit"], is_asymmetric(params)
    settings = edit_settings(params)
    bg, tg = data["test_bg"], data["test_tg"]
    xT_bg, xT_tg = cache(bg.keys[:n], bg.x[:n]), cache(tg.keys[:n], tg.x[:n])
    is_bg, is_tg = torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    added, removed = swap_salient(diffusion, net.eval(), xT_bg, xT_tg, steps, t_edit, salient_strength(params), asym,
                                  batch_size=cache.batch_size, removal_strength=salient_strength(params, "remove"),
                                  donor_prior=donor_prior, common_shift=common_shift, **settings)
    grids = {}
    for name, split, xT, cls, edited in (("add", bg, xT_bg, is_bg, added), ("remove", tg, xT_tg, is_tg, removed)):
        rows = [split.x[:n].load(), edit(diffusion, net, xT, cls, steps, "reconstruct", t_edit, asymmetric=asym,
                                         batch_size=cache.batch_size, t_edit_max=settings["t_edit_max"]).cpu(),
                edited.cpu()]
        if params["dataset_kind"] == "toy":
            rows.append(toy_counterfactuals(split.rows.head(n), params["attribute"], split.x.shape[-1]))
        grids[name] = save_grid(rows, out_dir / f"qualitative_{name}.png", scale=4)
    strip = [edit(diffusion, net, xT_bg[:1], is_bg[:1], steps, "swap", t_edit, xT_tg[:1], is_tg[:1], alpha=a,
                  asymmetric=asym, donor_prior=donor_prior, **settings).cpu()
             for a in alphas]
    grids["strength"] = save_grid([torch.cat(strip)], out_dir / "salient_strength.png", scale=4)
    return grids
