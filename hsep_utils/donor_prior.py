"""Beyond the paper: the adding swap pulled toward the target class's mean salient code.

A target's S holds its attribute, the attribute's own sub-factors (the frame colour of its glasses) and,
since nothing in training asks it not to, more of that target (its hair colour), which a swap carries to
the background (docs/experiments.md, "the donor's own part"). What every target's S holds at a step is
the attribute; what one donor holds beyond the mean is its own. With ``donor_specificity`` γ the adding
swap takes S′ = S̄_t + γ·(S_donor − S̄_t): γ = 1 is the paper's swap, γ = 0 the same edit whatever the
donor (no sub-factor transfers), between them a share of what is the donor's own, above 1 more of it
than the donor's S holds (a sub-factor the swap under-renders, amplified). S̄_t, the mean S at
step t of the training targets the latent warm-up drew (their h trajectories are already cached), is
computed from the trained network once (notebook 02, ``preset_training.fit_donor_prior``) and kept
beside it, tied to its bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .pool_means import at_step, load_beside

FILE = "donor_prior.pt"


@dataclass
class DonorPrior:
    """γ and S̄_t: ``pull`` gives the S a swap takes from a donor's S at step t."""

    specificity: float
    mean: dict[int, torch.Tensor]  # timestep → the training targets' mean S there, (C, H, W)

    def __post_init__(self) -> None:
        if not self.specificity >= 0:
            raise ValueError(f"donor_specificity must be ≥ 0, got {self.specificity}")

    def pull(self, s: torch.Tensor, t: int) -> torch.Tensor:
        m = at_step(self.mean, t, s, "donor prior")
        if self.specificity == 1:  # the paper's swap, to the bit
            return s
        return m + self.specificity * (s - m)


def load_donor_prior(params: dict, checkpoint: Path) -> DonorPrior | None:
    """The preset's prior for the network at ``checkpoint``; None when ``donor_specificity`` is 1 (the
    paper's swap)."""
    gamma = float(params["donor_specificity"])
    if gamma == 1.0:
        return None
    fix = "run notebook 02's cell after training (hsep_utils.preset_training.fit_donor_prior), which writes it"
    return DonorPrior(gamma, load_beside(checkpoint, FILE, f"donor_specificity {gamma}", "the training targets' mean S", fix))
