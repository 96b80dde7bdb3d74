"""The Fig. 9 study: how faithfully DDIM inversion + regeneration reproduces images, per step count."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from .diffusion import Diffusion
from .metrics import Unavailable, lpips_per_image, mse_per_image, psnr_per_image
from .presets import steps_for_psnr


def reconstruction_study(diffusion: Diffusion, x0: torch.Tensor, steps: list[int], lpips=None,
                         batch_size: int = 64, progress: bool = True) -> tuple[pd.DataFrame, dict[int, torch.Tensor]]:
    """Per step count: mean MSE / PSNR (and LPIPS when a model is given) of reconstructions.

    Returns the table (columns ``n_steps, mse, psnr[, lpips]``, plus the standard deviations)
    and the reconstructions themselves, keyed by step count.
    """
    rows, recons = [], {}
    for n in steps:
        rec = diffusion.reconstruct(x0, n, batch_size=batch_size, progress=progress)
        mse, psnr = mse_per_image(rec, x0), psnr_per_image(rec, x0)
        row = dict(n_steps=n, mse=mse.mean().item(), psnr=psnr.mean().item(), mse_std=mse.std().item(),
                   psnr_std=psnr.std().item(), n_images=len(x0))
        if lpips is not None and not isinstance(lpips, Unavailable):
            row["lpips"] = lpips_per_image(lpips, rec, x0).mean().item()
        rows.append(row)
        recons[n] = rec
    return pd.DataFrame(rows), recons


def steps_report(table: pd.DataFrame, params: dict) -> str:
    """What notebook 01's curve means for the later notebooks' ``ddim_steps``: the count chosen
    (``auto``) or the preset's, with its reconstruction PSNR, and a warning when it stays below
    ``ddim_steps_min_psnr`` (an edit cannot show through reconstructions that lose the image)."""
    floor = params["ddim_steps_min_psnr"]
    if params["ddim_steps"] == "auto":
        steps, reached = steps_for_psnr(table, floor)
        how = f"ddim_steps auto: notebooks 02–06 run {steps} DDIM steps, "
        how += (f"the fewest of {list(table['n_steps'])} reaching {floor:g} dB" if reached else
                f"the best of {list(table['n_steps'])}; none reaches {floor:g} dB")
    else:
        steps, how = params["ddim_steps"], f"ddim_steps {params['ddim_steps']} (set by the preset)"
    row = table[table["n_steps"] == steps]
    if not len(row):
        return f"{how}; notebook 01 did not measure {steps} steps (hspace_steps {list(table['n_steps'])})"
    psnr = float(row["psnr"].iloc[0])
    text = f"{how}: reconstruction {psnr:.1f} dB"
    if psnr < floor:
        text += (f"\nWARNING: below {floor:g} dB the base model loses these images on the way through DDIM, so no "
                 f"edit can show through it: use more steps (ddim_steps) or a base model trained on this domain "
                 f"(data_prep.folders --train-base-model)")
    return text


def save_study(table: pd.DataFrame, out_dir, title: str = "") -> None:
    """``hspace_steps.csv`` (n_steps, mse, psnr[, lpips]) and the PSNR / MSE curve ``hspace_steps.png``."""
    import matplotlib.pyplot as plt

    from .io import save_dataframe, save_figure

    save_dataframe(table[[c for c in ("n_steps", "mse", "psnr", "lpips") if c in table]],
                   Path(out_dir) / "hspace_steps.csv")
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.errorbar(table["n_steps"], table["psnr"], yerr=table["psnr_std"], marker="o", capsize=3)
    a.set(xscale="log", xlabel="DDIM steps", ylabel="PSNR (dB)", title=f"{title} reconstruction PSNR")
    b.plot(table["n_steps"], table["mse"], marker="o")
    b.set(xscale="log", yscale="log", xlabel="DDIM steps", ylabel="MSE ([0, 1] pixels)", title="reconstruction MSE")
    for ax in (a, b):
        ax.set_xticks(table["n_steps"], [str(n) for n in table["n_steps"]])
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, Path(out_dir) / "hspace_steps.png", dpi=120)
    plt.show()
