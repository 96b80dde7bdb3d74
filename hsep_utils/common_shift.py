"""Beyond the paper: a removal that also moves C by the difference of the two classes' mean C.

Given its counterfactual's exact S, a target's own C still renders age and gender on the toy world
(docs/experiments.md, "what C keeps when removing"): part of the attribute sits in C, and no S′ removes it.
With ``removal_common_shift`` λ a removal takes C′ = C + λ·ΔC̄_t, ΔC̄_t = C̄_bg,t − C̄_tg,t the difference of
the backgrounds' and the targets' mean C at step t over the latent warm-up's pool of training images: one
change that reaches C, the same for every target. In the residual form the edit is
h + f(C′, S′) − f(C, S). λ = 0 is the paper's removal; adding swaps are untouched. ΔC̄_t is computed from the
trained network once (notebook 02, ``preset_training.fit_common_shift``) and kept beside it, tied to its bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .pool_means import at_step, load_beside

FILE = "common_shift.pt"


@dataclass
class CommonShift:
    """λ and ΔC̄_t: ``move`` gives the C a removal takes from a target's C at step t."""

    strength: float
    shift: dict[int, torch.Tensor]  # timestep → C̄_bg − C̄_tg there, (C, H, W)

    def __post_init__(self) -> None:
        if not self.strength >= 0:
            raise ValueError(f"removal_common_shift must be ≥ 0, got {self.strength}")

    def move(self, c: torch.Tensor, t: int) -> torch.Tensor:
        return c + self.strength * at_step(self.shift, t, c, "common shift")


def load_common_shift(params: dict, checkpoint: Path) -> CommonShift | None:
    """The preset's shift for the network at ``checkpoint``; None when ``removal_common_shift`` is 0 (the
    paper's removal)."""
    strength = float(params.get("removal_common_shift") or 0.0)
    if strength == 0.0:
        return None
    shift = CommonShift(strength, {})  # a λ below 0 is refused before the file is looked for
    fix = "run notebook 02's cell after training (hsep_utils.preset_training.fit_common_shift), which writes it"
    shift.shift.update(load_beside(checkpoint, FILE, f"removal_common_shift {strength}",
                                   "the difference of the classes' mean C", fix))
    return shift
