"""Tables 1–4: the rows of notebook 04 (and of each ablation configuration)."""
from __future__ import annotations

from .datasets import toy_counterfactual_set, toy_donor_counterfactuals
from .diffusion import Diffusion
from .evaluation import domain_metrics, toy_regions
from .mapping import MappingNetwork
from .parameters import is_asymmetric
from .split_edits import edit_pairs
from .splits import Split
from .strength import salient_strength
from .train import InversionCache


PAPER_STRENGTH_ROW = "x (α = 1)"
"""The domain label of the paper's unscaled swap in Tables 1–4 when the preset's strength differs."""



def quantitative_rows(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, data: dict[str, Split],
                      params: dict, classifier, models: dict, n: int | None = None) -> list[dict]:
    """Tables 1–4: one ``evaluation.domain_metrics`` row per domain for the first ``n`` test images of
    each class — x: backgrounds given the paired target's S (times the preset's ``salient_strength``),
    y: targets given S = 0 — with, on toy presets, the true counterfactuals (oracle SR,
    counterfactual MSE ratio, fd_toy, PSNR outside a local attribute's box) and, adding, the
    counterfactual with the donor's own sub-factors (donor match, the donor's oracle SR). When that
    strength is not 1, a third row ``x (α = 1)`` is the paper's own swap."""
    bg, tg = data["test_bg"], data["test_tg"]
    n = min(len(bg.x), len(tg.x)) if n is None else min(n, len(bg.x), len(tg.x))
    alpha = salient_strength(params)
    added, removed = edit_pairs(diffusion, net, cache, bg, tg, params["ddim_steps"], params["t_edit"], n,
                                is_asymmetric(params), alpha, t_edit_max=params.get("t_edit_max"))
    domains = [("x", bg, added, tg, False), ("y", tg, removed, bg, True)]
    if alpha != 1.0:
        paper, _ = edit_pairs(diffusion, net, cache, bg, tg, params["ddim_steps"], params["t_edit"], n,
                              is_asymmetric(params), remove=False, t_edit_max=params.get("t_edit_max"))
        domains.append((PAPER_STRENGTH_ROW, bg, paper, tg, False))
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
