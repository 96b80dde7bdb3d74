"""Beyond the paper: the strength of an edit — α of h̃ = f(C, α·S′) when adding, β of S′ = (1 − β)·S
when removing — chosen on the validation split (``salient_strength`` / ``removal_strength: auto``) or given."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .classifier import edit_success
from .common_shift import CommonShift
from .datasets import toy_counterfactual_set
from .diffusion import Diffusion
from .donor_prior import DonorPrior
from .evaluation import oracle_success, toy_regions
from .io import save_dataframe
from .mapping import MappingNetwork
from .metrics import psnr_per_image, rate_lower_bound
from .parameters import DEFAULTS, edit_settings, is_asymmetric
from .presets import results_dir
from .split_edits import edit_pairs
from .splits import Split
from .train import InversionCache

STRENGTH_GRID = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
"""The salient strengths α that ``salient_strength: auto`` chooses from."""

STRENGTH_CONFIDENCE = 0.9
"""The one-sided confidence with which the chosen α's validation SR must clear the target."""


STRENGTHS = {"add": ("salient_strength", "alpha", "salient_strength.csv"),
             "remove": ("removal_strength", "beta", "removal_strength.csv")}
"""Per direction: the preset's parameter, the strength's column and the file notebook 02 writes."""


def choose_salient_strength(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, data: dict[str, Split],
                            params: dict, classifier, out_csv: str | Path,
                            grid: tuple[float, ...] | None = None, confidence: float = STRENGTH_CONFIDENCE,
                            direction: str = "add", donor_prior: DonorPrior | None = None,
                            common_shift: CommonShift | None = None) -> float:
    """Beyond the paper (α = 1, S = 0): the strength of the edits of ``direction`` — adding, α of
    h̃ = f(C, α·S′); removing, β of S′ = (1 − β)·S — chosen on the validation split as the smallest
    of ``grid`` (default: the preset's ``strength_grid``, else ``STRENGTH_GRID``) whose SR in that direction
    reaches ``strength_target_sr`` with ``confidence`` (``metrics.rate_lower_bound`` of the SR on the images
    counted: the first strength whose measured SR crosses the bar is the one most likely to fall below it on new
    images) — on toy presets both SRs, the classifier's and the oracle's, since the exact counterfactual says
    whether the attribute was really edited. Without one that does: the smallest of the best bound (the lower of
    the two on toy presets). The smallest, because a stronger edit moves the image further from its original.
    The grid is searched by bisection, SR taken to rise with the strength (3 edits of the default 6
    strengths, not up to 6; where it does not, the choice still reaches the target, but a smaller
    strength that also does may go unedited); when none reaches the target, every strength is edited.
    ``donor_prior`` (adding) and ``common_shift`` (removing): ``edit``'s.
    Writes ``out_csv`` (alpha or beta, sr_add or sr_remove, sr_counted, their bounds ``*_low``,
    oracle_sr on toy presets, psnr, chosen: one row per strength edited, in order) and returns the choice."""
    if direction not in STRENGTHS:
        raise ValueError(f"direction must be one of {list(STRENGTHS)}, got {direction!r}")
    adding, (_, column, _) = direction == "add", STRENGTHS[direction]
    bg, tg = data["val_bg"], data["val_tg"]
    n = min(len(bg.x), len(tg.x))
    edited_split = bg if adding else tg
    originals = edited_split.x[:n].load()
    toy = params.get("dataset_kind") == "toy"
    if toy:
        head = edited_split.rows.head(n)
        cf = toy_counterfactual_set(head, params["attribute"], bg.x.shape[-1])
        regions = toy_regions(head, params["attribute"], bg.x.shape[-1])
    target = params.get("strength_target_sr")
    target = DEFAULTS["strength_target_sr"] if target is None else target
    if grid is None:
        grid = STRENGTH_GRID if params.get("strength_grid") is None else params["strength_grid"]
    if not grid or not all(isinstance(g, (int, float)) and g > 0 for g in grid):
        raise ValueError(f"strength_grid must hold strengths > 0, got {list(grid)}")
    grid, rows = sorted(set(float(g) for g in grid)), {}

    def measure(i: int) -> float:
        strength = grid[i]
        added, removed = edit_pairs(diffusion, net, cache, bg, tg, params["ddim_steps"], params["t_edit"], n,
                                    is_asymmetric(params), strength if adding else 1.0, remove=not adding,
                                    removal_strength=1.0 if adding else strength, add=adding,
                                    donor_prior=donor_prior if adding else None,
                                    common_shift=None if adding else common_shift, **edit_settings(params))
        edited = added if adding else removed
        sr, counted = edit_success(classifier, originals, edited, original_is_target=not adding)
        row = {column: strength, f"sr_{direction}": sr, "sr_counted": counted,
               f"sr_{direction}_low": rate_lower_bound(sr, counted, confidence)}
        score = row[f"sr_{direction}_low"]
        if toy:
            row["oracle_sr"] = oracle_success(edited, originals, cf, regions).float().mean().item()
            row["oracle_sr_low"] = rate_lower_bound(row["oracle_sr"], n, confidence)
            score = min(score, row["oracle_sr_low"])  # NaN (nothing counted) stays NaN
        rows[i] = {**row, "psnr": psnr_per_image(edited, originals).mean().item(), "score": score}
        return score

    low, high = 0, len(grid)  # bisection for the first strength that reaches the target
    while low < high:
        middle = (low + high) // 2
        if measure(middle) >= target:
            high = middle
        else:
            low = middle + 1
    if low == len(grid):  # none reached: every strength is edited, for the best bound
        for i in sorted(set(range(len(grid))) - rows.keys()):
            measure(i)
    rows = [rows[i] for i in sorted(rows)]
    table = pd.DataFrame(rows)
    score = table.pop("score")
    reached = table.index[score >= target]
    chosen = reached[0] if len(reached) else score.fillna(-1.0).idxmax()
    table["chosen"] = table.index == chosen
    save_dataframe(table, out_csv)
    return float(table.loc[chosen, column])


def salient_strength(params: dict, direction: str = "add") -> float:
    """The strength of the preset's edits of ``direction`` (notebooks 03–04): adding, α
    (``salient_strength``); removing, β (``removal_strength``): as given, or with ``auto`` the one
    notebook 02 chose on the validation split (``mapping/salient_strength.csv``,
    ``mapping/removal_strength.csv``)."""
    key, column, name = STRENGTHS[direction]
    value = params.get(key)
    if value is None:
        return 1.0
    if value != "auto":
        return float(value)
    path = results_dir(params) / "mapping" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: with {key} auto, notebook 02 chooses the strength "
                                f"on the validation split and writes it there; run notebook 02 (or set a number)")
    table = pd.read_csv(path)
    return float(table.loc[table["chosen"], column].iloc[0])
