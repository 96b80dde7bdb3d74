"""Where does a base model keep an attribute: in h, or in the skip connections at h's resolution?

    PYTHONPATH=.:benchmarks python benchmarks/skip_swap.py MODEL [--attribute glasses] [-n 32] [--ddim 50] [--windows 0:1000 0:600]

On n fresh toy identities (``world_screen.images``) per direction, the oracle
h-swap (``hsep_utils.diagnostics.oracle_hswap``: h replaced at every step by the true
counterfactual's, symmetric step) is run again with, besides h, the skip connections at h's
resolution (8 × 8 at 32 px) taken from the counterfactual's own generation. If the second passes
where the first fails, the decoder draws the attribute from those skips rather than from h, and a
base model blind to them (``hsep_utils.base_ddpm``'s ``cut_skip_levels``) is the candidate to train.
``--windows``: swap only at the steps of each window, to tell which steps decide the attribute and
which ones drift (docs/experiments.md "the noisiest steps"). Prints the oracle SR and CF MSE ratio
of both; writes OUT/skip_swap_<attribute>.png (rows: input, counterfactual, then per window h
swapped, h and the skips at its resolution swapped) when ``--out`` is given.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from world_screen import images
from hsep_utils.datasets import toy_counterfactual_set
from hsep_utils.diffusion import ddim_update, in_edit_window, load_diffusion
from hsep_utils.evaluation import cf_mse_ratio, oracle_success, toy_regions
from hsep_utils.hspace import Encoded, encode, decode
from hsep_utils.plotting import save_grid


@torch.no_grad()
def generate_with(diffusion, xT: torch.Tensor, cT: torch.Tensor, n_steps: int, swap_skips: bool,
                  window: tuple[int, int] = (0, 1000)) -> torch.Tensor:
    """DDIM generation from ``xT`` whose decoder gets h (and with ``swap_skips`` the skips at h's
    resolution) from the generation of ``cT`` run alongside, at the steps lo <= t < hi of ``window``
    (symmetric step: both DDIM terms from the swapped ε); its own elsewhere."""
    seq = diffusion.timesteps(n_steps)
    x, c = xT.clone(), cT.clone()
    for t, t_next in zip(reversed(seq), reversed([-1] + seq[:-1])):
        ex, ec = encode(diffusion.unet, x, t), encode(diffusion.unet, c, t)
        if in_edit_window(t, *window):
            skips = tuple(sc if swap_skips and sx.shape[-1] == ec.h.shape[-1] else sx for sx, sc in zip(ex.skips, ec.skips))
            eps = decode(diffusion.unet, Encoded(ec.h, ex.emb, skips, ex.dtype))
        else:
            eps = decode(diffusion.unet, ex)
        x = ddim_update(x, eps, diffusion.alpha(t, x), diffusion.alpha(t_next, x))[0]
        c = ddim_update(c, decode(diffusion.unet, ec), diffusion.alpha(t, c), diffusion.alpha(t_next, c))[0]
    return x


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--attribute", default="glasses")
    ap.add_argument("-n", type=int, default=32, help="images per direction")
    ap.add_argument("--ddim", type=int, default=50)
    ap.add_argument("--seed", type=int, default=77, help="the identities' seed (not the screen's)")
    ap.add_argument("--windows", nargs="+", default=["0:1000"], metavar="LO:HI",
                    help="swap at the steps LO <= t < HI, one run per window (0:1000: every step)")
    ap.add_argument("--h-only", action="store_true", help="skip the h-and-skips run (a model blind to those skips: "
                    "the same images)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    diffusion = load_diffusion(a.model, "cpu")
    size = diffusion.sample_size
    found, ratios, grids = {}, {}, []
    for direction, value in (("add", 0), ("remove", 1)):
        rows, x = images(a.seed + value, a.n, **{a.attribute: value})
        cf_set = toy_counterfactual_set(rows, a.attribute, size)
        regions = toy_regions(rows, a.attribute, size)
        xT, cT = diffusion.invert(x, a.ddim), diffusion.invert(cf_set[0], a.ddim)
        grid = [x, cf_set[0]]
        for window in a.windows:
            lo, hi = map(int, window.split(":"))
            for name, swap_skips in (("h", False), ("h_and_its_resolution_skips", True))[:1 if a.h_only else 2]:
                out = generate_with(diffusion, xT, cT, a.ddim, swap_skips, (lo, hi))
                key = f"{direction}_{name}" + (f"_t{lo}-{hi}" if (lo, hi) != (0, 1000) else "")
                found[key] = round(oracle_success(out, x, cf_set, regions).float().mean().item(), 3)
                ratios[key] = round(cf_mse_ratio(out, x, cf_set), 2)
                grid.append(out)
        grids += grid
    print(json.dumps(dict(model=str(a.model), attribute=a.attribute, n=a.n, ddim=a.ddim, oracle_sr=found, cf_mse_ratio=ratios)))
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        save_grid(grids, a.out / f"skip_swap_{a.attribute}.png", scale=4)


if __name__ == "__main__":
    main()
