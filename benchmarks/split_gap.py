"""Why does adding lose more from validation to the sealed split than removing? A trained toy preset's
edits (its α, β and edit form) on three populations — validation, the dataset's own test split (seed
``seed``, never read by a notebook since the sealed population exists) and the sealed population — each
scored by the selection classifier, the judge and the oracle. It chooses nothing.

    python benchmarks/split_gap.py PRESET [PRESET ...]      # RESULTS_ROOT: another results root

``N``: pairs per population (default validation's count, 64 + 64 in the toy presets; a population with fewer
scores all it has). Adding swaps take the preset's donor prior when it has one, removals its common shift, as notebook
04's.
"""
import json
import os
import sys

from hsep_utils.classifier import edit_success, load_classifier
from hsep_utils.common_shift import load_common_shift
from hsep_utils.datasets import toy_counterfactual_set
from hsep_utils.diffusion import load_diffusion
from hsep_utils.donor_prior import load_donor_prior
from hsep_utils.evaluation import oracle_success, toy_regions
from hsep_utils.parameters import edit_settings, is_asymmetric
from hsep_utils.presets import repo_path, resolve, results_dir
from hsep_utils.split_edits import edit_pairs
from hsep_utils.splits import inversion_cache, load_preset_data
from hsep_utils.strength import salient_strength
from hsep_utils.train import load_mapping


def scores(diffusion, net, cache, bg, tg, params, classifiers, n, prior, shift) -> dict:
    n = min(n, len(bg.keys), len(tg.keys))
    added, removed = edit_pairs(diffusion, net, cache, bg, tg, params["ddim_steps"], params["t_edit"], n,
                                is_asymmetric(params), salient_strength(params),
                                removal_strength=salient_strength(params, "remove"), donor_prior=prior,
                                common_shift=shift, **edit_settings(params))
    found = {}
    for name, split, edited, is_target in (("x", bg, added, False), ("y", tg, removed, True)):
        x = split.x[:n].load()
        head = split.rows.head(n)
        cf = toy_counterfactual_set(head, params["attribute"], x.shape[-1])
        found[name] = {c: round(edit_success(m, x, edited, is_target)[0], 3) for c, m in classifiers.items()}
        found[name]["oracle"] = round(oracle_success(edited, x, cf, toy_regions(head, params["attribute"],
                                                                                 x.shape[-1])).float().mean().item(), 3)
    return found


def main() -> None:
    root = {"results_root": os.environ["RESULTS_ROOT"]} if "RESULTS_ROOT" in os.environ else {}
    for preset in sys.argv[1:]:
        params = resolve(preset, root or None)
        diffusion = load_diffusion(repo_path(params["base_model"]), "cpu")
        checkpoint = results_dir(params) / "mapping" / "best.pt"
        net, prior = load_mapping(checkpoint, "cpu"), load_donor_prior(params, checkpoint)
        shift = load_common_shift(params, checkpoint)
        classifiers = {c: load_classifier(results_dir(params) / f"{c}.pt")[0] for c in ("classifier", "judge")}
        n = int(os.environ.get("N", params["n_val_per_class"]))  # pairs per population
        sealed = load_preset_data(params, diffusion.sample_size, params["n_val_per_class"])
        own = load_preset_data({**params, "test_seed": None}, diffusion.sample_size, params["n_val_per_class"])
        cache = inversion_cache(diffusion, params, sealed)
        cache.register(own["test_bg"].keys, own["test_bg"].x)
        cache.register(own["test_tg"].keys, own["test_tg"].x)
        for name, bg, tg in (("validation", sealed["val_bg"], sealed["val_tg"]),
                             ("test split (seed)", own["test_bg"], own["test_tg"]),
                             ("sealed", sealed["test_bg"], sealed["test_tg"])):
            print(preset, name, json.dumps(scores(diffusion, net, cache, bg, tg, params, classifiers, n, prior,
                                                                 shift)), flush=True)


if __name__ == "__main__":
    main()
