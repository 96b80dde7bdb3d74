"""Beyond the paper: the salient strength α of h̃ = f(C, α·S′) when adding, chosen on the
validation split (``salient_strength: auto``) or given."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .classifier import edit_success
from .datasets import toy_counterfactual_set
from .diffusion import Diffusion
from .evaluation import oracle_success, toy_regions
from .io import save_dataframe
from .mapping import MappingNetwork
from .metrics import psnr_per_image, rate_lower_bound
from .parameters import DEFAULTS, is_asymmetric
from .presets import results_dir
from .split_edits import edit_pairs
from .splits import Split
from .train import InversionCache

STRENGTH_GRID = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
"""The salient strengths α that ``salient_strength: auto`` chooses from."""

STRENGTH_CONFIDENCE = 0.9
"""The one-sided confidence with which the chosen α's validation SR must clear the target."""


def choose_salient_strength(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, data: dict[str, Split],
                            params: dict, classifier, out_csv: str | Path,
                            grid: tuple[float, ...] = STRENGTH_GRID, confidence: float = STRENGTH_CONFIDENCE) -> float:
    """Beyond the paper (α = 1): the salient strength α of h̃ = f(C, α·S′) for adding, chosen on the
    validation split as the smallest α of ``grid`` whose adding SR reaches ``strength_target_sr``
    with ``confidence`` (``metrics.rate_lower_bound`` of the SR on the images counted: the first α
    whose measured SR crosses the bar is the one most likely to fall below it on new images) — on
    toy presets both SRs, the classifier's and the oracle's, since the exact counterfactual says
    whether the attribute was really added. Without one that does: the smallest α of the best bound
    (the lower of the two on toy presets). The smallest, because a stronger S moves the image
    further from its original. Removal (S = 0) does not depend on α. The α above the first that
    reaches the target are not edited (they cannot be chosen). Writes ``out_csv`` (alpha, sr_add,
    sr_counted, their bounds ``*_low``, oracle_sr on toy presets, psnr, chosen: one row per α
    edited) and returns the chosen α."""
    bg, tg = data["val_bg"], data["val_tg"]
    n = min(len(bg.x), len(tg.x))
    originals = bg.x[:n].load()
    toy = params.get("dataset_kind") == "toy"
    if toy:
        head = bg.rows.head(n)
        cf = toy_counterfactual_set(head, params["attribute"], bg.x.shape[-1])
        regions = toy_regions(head, params["attribute"], bg.x.shape[-1])
    target = params.get("strength_target_sr")
    target = DEFAULTS["strength_target_sr"] if target is None else target
    rows = []
    for alpha in sorted(grid):  # the first α that reaches the target is the choice: larger ones are not edited
        added, _ = edit_pairs(diffusion, net, cache, bg, tg, params["ddim_steps"], params["t_edit"], n,
                              is_asymmetric(params), alpha, remove=False, t_edit_max=params.get("t_edit_max"))
        sr, counted = edit_success(classifier, originals, added, original_is_target=False)
        row = dict(alpha=alpha, sr_add=sr, sr_counted=counted, sr_add_low=rate_lower_bound(sr, counted, confidence))
        score = row["sr_add_low"]
        if toy:
            row["oracle_sr"] = oracle_success(added, originals, cf, regions).float().mean().item()
            row["oracle_sr_low"] = rate_lower_bound(row["oracle_sr"], n, confidence)
            score = min(score, row["oracle_sr_low"])  # NaN (nothing counted) stays NaN
        rows.append({**row, "psnr": psnr_per_image(added, originals).mean().item(), "score": score})
        if score >= target:
            break
    table = pd.DataFrame(rows)
    score = table.pop("score")
    reached = table.index[score >= target]
    chosen = reached[0] if len(reached) else score.fillna(-1.0).idxmax()
    table["chosen"] = table.index == chosen
    save_dataframe(table, out_csv)
    return float(table.loc[chosen, "alpha"])


def salient_strength(params: dict) -> float:
    """The α of the preset's adding edits (notebooks 03–04): ``salient_strength`` as given, or with
    ``auto`` the one notebook 02 chose on the validation split (``mapping/salient_strength.csv``)."""
    value = params.get("salient_strength")
    if value is None:
        return 1.0
    if value != "auto":
        return float(value)
    path = results_dir(params) / "mapping" / "salient_strength.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: with salient_strength auto, notebook 02 chooses the strength "
                                f"on the validation split and writes it there; run notebook 02 (or set a number)")
    table = pd.read_csv(path)
    return float(table.loc[table["chosen"], "alpha"].iloc[0])
