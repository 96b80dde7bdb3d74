"""Tables 1–4: the rows of notebook 04 (and of each ablation configuration)."""
from __future__ import annotations

from .common_shift import CommonShift
from .datasets import toy_counterfactual_set, toy_donor_counterfactuals
from .diffusion import Diffusion
from .donor_prior import DonorPrior
from .evaluation import domain_metrics, toy_regions
from .mapping import MappingNetwork
from .parameters import edit_settings, is_asymmetric
from .split_edits import edit_pairs
from .splits import Split
from .strength import salient_strength
from .train import InversionCache


PAPER_STRENGTH_ROW = "x (α = 1)"
"""The domain label of the paper's swap in Tables 1–4 (α = 1, no donor prior, no edit mask) when the preset's differs."""
PAPER_REMOVAL_ROW = "y (β = 1)"
"""The domain label of the paper's removal (S = 0, no edit mask, no common shift) when the preset's differs."""


def quantitative_rows(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, data: dict[str, Split],
                      params: dict, classifier, models: dict, n: int | None = None,
                      donor_prior: DonorPrior | None = None, common_shift: CommonShift | None = None) -> list[dict]:
    """Tables 1–4: one ``evaluation.domain_metrics`` row per domain for the first ``n`` test images of
    each class — x: backgrounds given the paired target's S (times the preset's ``salient_strength``),
    y: targets given S = 0 — with, on toy presets, the true counterfactuals (oracle SR,
    counterfactual MSE ratio, fd_toy, PSNR outside a local attribute's box) and, adding, the
    counterfactual with the donor's own sub-factors (donor match, the donor's oracle SR). When that
    strength is not 1, a ``donor_prior`` pulls the donors' S (``edit``'s) or an ``edit_mask`` confines the
    edits, a row ``x (α = 1)`` is the paper's own swap; when the removal strength β is not 1, a mask
    confines the edits or a ``common_shift`` moves the removals' C, a row ``y (β = 1)`` the paper's removal."""
    bg, tg = data["test_bg"], data["test_tg"]
    n = min(len(bg.x), len(tg.x)) if n is None else min(n, len(bg.x), len(tg.x))
    alpha, beta = salient_strength(params), salient_strength(params, "remove")
    settings = edit_settings(params)
    added, removed = edit_pairs(diffusion, net, cache, bg, tg, params["ddim_steps"], params["t_edit"], n,
                                is_asymmetric(params), alpha, removal_strength=beta, donor_prior=donor_prior,
                                common_shift=common_shift, **settings)
    domains = [("x", bg, added, tg, False), ("y", tg, removed, bg, True)]
    masked = settings["edit_mask"] != 0
    paper_swap = alpha == 1.0 and donor_prior is None and not masked
    paper_removal = beta == 1.0 and common_shift is None and not masked
    if not (paper_swap and paper_removal):
        paper_add, paper_remove = edit_pairs(diffusion, net, cache, bg, tg, params["ddim_steps"], params["t_edit"], n,
                                             is_asymmetric(params), remove=not paper_removal, add=not paper_swap,
                                             **{**settings, "edit_mask": 0.0})
        if not paper_swap:
            domains.append((PAPER_STRENGTH_ROW, bg, paper_add, tg, False))
        if not paper_removal:
            domains.append((PAPER_REMOVAL_ROW, tg, paper_remove, bg, True))
    rows = []
    for domain, split, edited, opposite, is_target in domains:
        toy = {}
        if params["dataset_kind"] == "toy":
            head = split.rows.head(n)
            toy = dict(counterfactual=toy_counterfactual_set(head, params["attribute"], split.x.shape[-1]),
                       regions=toy_regions(head, params["attribute"], split.x.shape[-1]))
            if not is_target:  # adding by swap: image i took target i's S
                toy["donor_counterfactual"] = toy_donor_counterfactuals(head, opposite.rows.head(n), params["attribute"],
                                                                        split.x.shape[-1])
        rows.append(domain_metrics(domain, split.x[:n].load(), edited, opposite.x, classifier, is_target,
                                   models["lpips"], models["id_embed"], models["inception"], **toy,
                                   batch_size=cache.batch_size))
    return rows
