"""Can a base model's h-space carry the attribute at all? An upper bound for the method, on toy presets.

The mapping network can only edit what h controls. On toy presets every test image has its exact
counterfactual, so we can replace h at every step of an image's DDIM generation by the
counterfactual's own h at the same timestep (the ideal salient edit) and score the result like an
edit. If this **oracle h-swap** does not flip the attribute, the base model's natural h-space does not
carry it in a transplantable way: a mapping network then has to invent an h̃ off the natural h
manifold (its fusion can), which is harder and drifts. Check a base model with it first.

    python -m hsep_utils.diagnostics --preset toy-glasses [--base-model DIR] [-n 64]

It prints, per direction (add: backgrounds, remove: targets): classifier SR and oracle SR of the
oracle h-swap, its counterfactual MSE ratio, the reconstruction PSNR, the **reconstruction ceiling**
(classifier SR and oracle SR of the true counterfactual's own reconstruction, inverted and generated
at the same step count: what any edit scored against it can reach at that fidelity), and **h influence** = MSE
between generating with the image's own h and with another image's h, over the MSE between the two
images — near 0 means the decoder ignores h (the skip connections decide), near 1 means h decides.
For a local attribute it adds the h-swap's PSNR outside the attribute's box, and when adding an attribute
with salient sub-factors (glasses: their style) given ``donors``, the **donor h-swap**: h replaced by
that of the counterfactual with donor i's sub-factors, i.e. what a perfect S of the donor would give, scored
by ``donor_match`` — whether this base model's h carries the sub-factors at all — and the **donor's change**:
the input's own h plus donor i's true change of h (its h less that of its own counterfactual without the
attribute), scored the same way — whether a sub-factor drawn on one face can be carried to another by adding
to h (the donor h-swap keeps the input's identity in the counterfactual, so it cannot tell). It scores the
validation split: the diagnostic chooses base models and step counts.

With ``--mapping best.pt`` it also splits a trained mapping network's shortfall (``mapping_gap``):
the preset's edit (add: the paired target's S at the preset's α; remove: S′ = (1 − β)·S; in the
preset's edit form) against the same network given the true counterfactual's own S (what a perfect
donor would give) and the counterfactual reconstructed through the network (its C and S: the
network's fidelity alone).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .classifier import edit_success
from .datasets import toy_counterfactual_set, toy_donor_counterfactuals
from .diffusion import Diffusion
from .edit import edit
from .evaluation import cf_mse_ratio, donor_transfer, oracle_success, psnr_outside, toy_regions
from .mapping import MappingNetwork
from .metrics import mse_per_image, psnr_per_image
from .splits import Split
from .verdict import salient_rms
from .plotting import save_grid


@torch.no_grad()
def oracle_hswap(diffusion: Diffusion, split: Split, attribute: str, classifier, original_is_target: bool,
                 n: int = 64, n_steps: int = 20, asymmetric: bool = True, failures: str | Path | None = None,
                 donors: Split | None = None, t_edit: int = 0, t_edit_max: int | None = None) -> dict:
    """The oracle h-swap on the first ``n`` images of a toy split (see the module docstring), with
    the reverse process of ``Diffusion.generate`` (``asymmetric``), h swapped at the steps a preset
    edits (``t_edit`` ≤ t < ``t_edit_max``). ``failures``: a PNG to draw the
    images where oracle SR fails (rows: input, h-swapped, true counterfactual; at most 16).
    ``donors`` (adding): target images whose sub-factors the donor h-swap asks for, donor i for image i.
    ``oracle_failures`` (and ``donor_hswap_failures``): the indices of every failed image."""
    head = split.rows.head(n)
    x = split.x[:n].load()
    size = x.shape[-1]
    cf_set = toy_counterfactual_set(head, attribute, size)  # the edit is scored against each
    cf = cf_set[0]  # whose h is the ideal edit
    xT = diffusion.invert(x, n_steps)
    rec, own = diffusion.generate(xT, n_steps, return_trajectory=True)
    h_own = dict(zip(own.timesteps, own.h))
    window = dict(asymmetric=asymmetric, t_edit=t_edit, t_edit_max=t_edit_max)

    def h_of(source: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """(source regenerated, its h at each timestep along that generation)."""
        regenerated, traj = diffusion.generate(diffusion.invert(source, n_steps), n_steps, return_trajectory=True)
        return regenerated, dict(zip(traj.timesteps, traj.h))

    def given_h_of(source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(source regenerated, x generated with the source's h at every step)."""
        regenerated, h = h_of(source)
        return regenerated, diffusion.generate(xT, n_steps, edit_fn=lambda _, t: h[t], **window).cpu()

    rec_cf, swapped = given_h_of(cf)
    shift = torch.roll(torch.arange(len(x)), 1)
    foreign = diffusion.generate(xT, n_steps, edit_fn=lambda h, t: h_own[t][shift.to(h.device)], **window).cpu()
    rec, rec_cf = rec.cpu(), rec_cf.cpu()
    sr, counted = edit_success(classifier, x, swapped, original_is_target)
    regions = toy_regions(head, attribute, size)
    success = oracle_success(swapped, x, cf_set, regions)
    failed = (~success).nonzero().flatten()
    if failures is not None and len(failed):
        drawn = failed[:16]
        save_grid([x[drawn], swapped[drawn], cf[drawn]], failures, scale=6)
    found = dict(n=len(x), classifier_sr=sr, sr_counted=counted, oracle_sr=success.float().mean().item(),
                 oracle_failures=failed.tolist(),
                 ceiling_classifier_sr=edit_success(classifier, x, rec_cf, original_is_target)[0],
                 ceiling_oracle_sr=oracle_success(rec_cf, x, cf_set, regions).float().mean().item(),
                 cf_mse_ratio=cf_mse_ratio(swapped, x, cf_set), reconstruction_psnr=psnr_per_image(rec, x).mean().item(),
                 h_influence=(mse_per_image(foreign, rec).mean() / mse_per_image(rec[shift], rec).mean()).item())
    if regions is not None:
        found["psnr_outside"] = psnr_outside(swapped, x, regions).mean().item()
    if donors is not None and not original_is_target and len(cf_set) > 1:  # the attribute has sub-factors
        donor_cf = toy_donor_counterfactuals(head, donors.rows.head(len(x)), attribute, size)
        given = given_h_of(donor_cf)[1]
        match, donor_success = donor_transfer(given, x, cf_set, donor_cf, regions)
        found.update(donor_hswap_match=match.float().mean().item(),
                     donor_hswap_oracle_sr=donor_success.float().mean().item(),
                     donor_hswap_failures=(~donor_success).nonzero().flatten().tolist())
        # across identities: the donor's own true change of h (its h less that of its counterfactual without
        # the attribute) added to the input's — the ideal that adding a donor's part of h aims at
        h_on = h_of(donors.x[:len(x)].load())[1]
        h_off = h_of(toy_counterfactual_set(donors.rows.head(len(x)), attribute, size)[0])[1]
        added = diffusion.generate(xT, n_steps, edit_fn=lambda h, t: h + h_on[t] - h_off[t], **window).cpu()
        match, donor_success = donor_transfer(added, x, cf_set, donor_cf, regions)
        found.update(donor_change_classifier_sr=edit_success(classifier, x, added, original_is_target)[0],
                     donor_change_oracle_sr=oracle_success(added, x, cf_set, regions).float().mean().item(),
                     donor_change_match=match.float().mean().item(),
                     donor_change_donor_oracle_sr=donor_success.float().mean().item())
    return found


@torch.no_grad()
def mapping_gap(diffusion: Diffusion, net: MappingNetwork, split: Split, donors: Split, attribute: str, classifier,
                original_is_target: bool, n: int = 64, n_steps: int = 20, asymmetric: bool = True,
                t_edit: int = 0, t_edit_max: int | None = None, strength: float = 1.0,
                residual: bool = False) -> dict:
    """Classifier SR, oracle SR, CF MSE ratio (and for a local attribute the PSNR outside its box)
    of three edits of the first ``n`` images of a toy split (see the module docstring): ``edit``
    (add: donor i's S, as ``swap_salient``; remove: S′ = (1 − β)·S), ``counterfactual_salient`` (own C, the
    true counterfactual's S) and ``counterfactual_through_net`` (the counterfactual's own C and S);
    and ``salient_rms_over_h_rms``, the RMS of the inputs' S over that of their h along their own
    generation. The edits use the steps a preset edits (``t_edit`` ≤ t < ``t_edit_max``) and its
    form: ``strength`` is α adding (both swaps) and β removing (``edit``), ``residual``
    the residual form; the counterfactual through the network is always f(C, S), its fidelity alone.
    So whether an edit's damage outside the box comes from the donor's S (``edit`` against
    ``counterfactual_salient``) or from the network at that strength (both) can be told apart."""
    head, x = split.rows.head(n), split.x[:n].load()
    window = dict(asymmetric=asymmetric, t_edit=t_edit, t_edit_max=t_edit_max)
    n = len(x)
    cf_set = toy_counterfactual_set(head, attribute, x.shape[-1])
    cf = cf_set[0]
    regions = toy_regions(head, attribute, x.shape[-1])
    own, other = torch.full((n,), original_is_target), torch.full((n,), not original_is_target)
    xT, xT_cf = diffusion.invert(x, n_steps), diffusion.invert(cf, n_steps)
    swap_alpha = 1.0 if original_is_target else strength  # removing, the counterfactual's S is a background's
    if original_is_target:
        edited = edit(diffusion, net, xT, own, n_steps, "remove", alpha=strength, residual=residual, **window)
    else:
        edited = edit(diffusion, net, xT, own, n_steps, "swap", donor_xT=diffusion.invert(donors.x[:n].load(), n_steps),
                     donor_is_target=other, alpha=strength, residual=residual, **window)
    edits = dict(edit=edited,
                 counterfactual_salient=edit(diffusion, net, xT, own, n_steps, "swap", donor_xT=xT_cf,
                                             donor_is_target=other, alpha=swap_alpha, residual=residual, **window),
                 counterfactual_through_net=edit(diffusion, net, xT_cf, other, n_steps, "reconstruct", **window))
    def scores(e: torch.Tensor) -> dict:
        e = e.cpu()
        found = dict(classifier_sr=edit_success(classifier, x, e, original_is_target)[0],
                     oracle_sr=oracle_success(e, x, cf_set, regions).float().mean().item(),
                     cf_mse_ratio=cf_mse_ratio(e, x, cf_set))
        if regions is not None:  # a local attribute
            found["psnr_outside"] = psnr_outside(e, x, regions).mean().item()
        return found

    found = {name: scores(e) for name, e in edits.items()}
    found["salient_rms_over_h_rms"] = salient_rms(diffusion, net, xT, own, n_steps)
    return found


def main(argv=None) -> None:
    from .classifier import fit_attribute_classifier, load_classifier
    from .parameters import is_asymmetric, is_residual
    from .presets import diffusion_of, resolve, results_dir
    from .splits import load_preset_data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="toy-glasses", help="a toy preset")
    ap.add_argument("--base-model", help="another base model directory (default: the preset's)")
    ap.add_argument("-n", type=int, default=64, help="validation images per direction")
    ap.add_argument("--steps", type=int, help="DDIM steps (default: the preset's ddim_steps)")
    ap.add_argument("--failures", metavar="DIR", help="save the images the oracle h-swap fails on, per direction, "
                    "as DIR/oracle_failures_{add,remove}_<steps>.png (input, h-swapped, counterfactual)")
    ap.add_argument("--mapping", metavar="CKPT", help="a trained mapping network (e.g. results/toy-glasses/mapping/"
                    "best.pt): also print its mapping_gap per direction")
    ap.add_argument("--reverse-process", choices=("asymmetric", "symmetric"),
                    help="the edited DDIM step (default: the preset's reverse_process; see Diffusion.generate)")
    ap.add_argument("--t-edit-max", type=int, metavar="T", help="edit the steps t < T only (default: the preset's "
                    "t_edit_max); 1000 or more: every step")
    a = ap.parse_args(argv)
    params = resolve(a.preset)
    params["reverse_process"] = a.reverse_process or params.get("reverse_process")
    a.steps = a.steps or params["ddim_steps"]
    window = dict(t_edit=params["t_edit"], t_edit_max=a.t_edit_max or params.get("t_edit_max"))
    if params["dataset_kind"] != "toy":
        raise SystemExit(f"{a.preset}: the oracle h-swap needs counterfactuals, which only toy presets have")
    diffusion = diffusion_of({**params, "base_model": a.base_model or params["base_model"]})
    data = load_preset_data(params, diffusion.sample_size, max(a.n, params["n_val_per_class"]))  # n held out
    saved = results_dir(params) / "classifier.pt"
    classifier = load_classifier(saved)[0] if saved.exists() else fit_attribute_classifier(data, params["seed"])[0]
    classifier = classifier.to(diffusion.device)
    if a.mapping:
        from .strength import salient_strength
        from .train import load_mapping

        net = load_mapping(a.mapping, diffusion.device)
    for name, split, is_target in (("add", data["val_bg"], False), ("remove", data["val_tg"], True)):
        donors = data["val_tg"] if name == "add" else data["val_bg"]
        found = oracle_hswap(diffusion, split, params["attribute"], classifier, is_target, a.n, a.steps,
                             is_asymmetric(params),
                             a.failures and Path(a.failures) / f"oracle_failures_{name}_{a.steps}.png", donors, **window)
        print(name, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in found.items()}))
        if a.mapping:
            gap = mapping_gap(diffusion, net, split, donors, params["attribute"], classifier, is_target, a.n, a.steps,
                              is_asymmetric(params), **window, residual=is_residual(params),
                              strength=salient_strength(params, "remove" if is_target else "add"))
            print(name, "mapping: RMS of S / RMS of h along the inputs' own generation",
                  round(gap.pop("salient_rms_over_h_rms"), 3))
            for edit_name, scores in gap.items():
                print(name, "mapping", edit_name, json.dumps({k: round(v, 3) for k, v in scores.items()}))


if __name__ == "__main__":
    main()
