"""The paper's edit (h̃ in place of h) against the residual one (h + f(C, α·S′) − f(C, S)) on a trained
preset's validation split: same network (the preset's ``mapping/best.pt``); for each form α and the
removal strength β chosen on validation by notebook 02's rule, then notebook 04's rows on validation
(with the rows at α = 1 and β = 1 beside). It chooses ``edit_form`` and ``removal_strength``, so it
never reads the test split.

    python benchmarks/edit_form.py OUTDIR PRESET [PRESET ...]
    python benchmarks/edit_form.py --table OUTDIR [OUTDIR ...]   # the JSONs as one markdown table
    python benchmarks/edit_form.py --frontier PNG JSON [JSON ...]  # donor oracle against x's CF MSE ratio, one point each

``RESULTS_ROOT`` reads the presets' trained results from another root (e.g. a screening run's); ``OVERRIDES`` (JSON)
sets parameters the edits read that the screen changed (e.g. ``{"t_edit_max": 1000}``; a ``donor_specificity`` below 1
fits the network's donor prior first when it has none, ``hsep_utils.donor_prior``, and a ``removal_common_shift`` above 0
its classes' mean C difference, ``hsep_utils.common_shift``);
``FORMS`` (default ``replace,residual``) the forms to score; ``BETA`` (default ``auto``) the removal
strength (a number: that β, e.g. ``1``, the paper's S = 0). Writes ``OUTDIR/<preset>.json`` (per form: α, β, the rows
x / y / x (α = 1) / y (β = 1) with classifier SR, oracle SRs, donor match, CF MSE ratio, PSNR, PSNR
outside the box, ID) and ``OUTDIR/<preset>_{alpha,beta}_<form>.csv`` (the searches)."""
import json
import os
import sys
import time
from pathlib import Path

from mapping_budget import validation_rows

from hsep_utils.classifier import load_classifier
from hsep_utils.diffusion import load_diffusion
from hsep_utils.common_shift import load_common_shift
from hsep_utils.donor_prior import load_donor_prior
from hsep_utils.preset_training import fit_common_shift, fit_donor_prior
from hsep_utils.evaluation import preset_metric_models
from hsep_utils.io import write_text
from hsep_utils.presets import repo_path, resolve, results_dir
from hsep_utils.splits import inversion_cache, load_preset_data
from hsep_utils.strength import choose_salient_strength
from hsep_utils.train import load_mapping


def cell(row: dict, *keys: str) -> str:
    return " / ".join(f"{row[k]:.2f}" if k in row else "–" for k in keys)


def table(dirs: list[str]) -> str:
    """One line per preset, scored network and form: SR / oracle SR each way, donor figures, CF MSE ratios,
    PSNR outside the box, and the minimum of the four SRs (the number the choice compares first)."""
    lines = ["| preset | network | form | α | β | x SR / oracle | donor oracle / match | y SR / oracle | "
             "CF ratio x / y | outside (dB) x / y | min SR |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d in dirs:
        for path in sorted(Path(d).glob("*.json")):
            found = json.loads(path.read_text())
            for form in ("replace", "residual"):
                if form not in found:
                    continue
                x, y = found[form]["rows"]["x"], found[form]["rows"]["y"]
                low = min(x["sr"], x["oracle_sr"], y["sr"], y["oracle_sr"])
                lines.append(f"| {found['preset']} | {found['results']} | {form} | {found[form]['alpha']:g} | "
                             f"{found[form].get('beta', 1.0):g} | {cell(x, 'sr', 'oracle_sr')} | "
                             f"{cell(x, 'oracle_sr_donor', 'donor_match')} | {cell(y, 'sr', 'oracle_sr')} | "
                             f"{x['cf_mse_ratio']:.2f} / {y['cf_mse_ratio']:.2f} | {cell(x, 'psnr_outside')} / "
                             f"{cell(y, 'psnr_outside')} | {low:.2f} |")
    return "\n".join(lines)


def frontier(png: str, files: list[str]) -> None:
    """What a screen traded: each JSON's residual x row as one point, the donor oracle (the transfer) against the CF
    MSE ratio (how far the edit lands from the true counterfactual: the rest of the face moving), named by its file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for f in files:
        x = json.loads(Path(f).read_text())["residual"]["rows"]["x"]
        ax.scatter(x["cf_mse_ratio"], x["oracle_sr_donor"], s=14)
        ax.annotate(Path(f).stem, (x["cf_mse_ratio"], x["oracle_sr_donor"]), fontsize=7, xytext=(3, 2),
                    textcoords="offset points")
    ax.set_xlabel("x: CF MSE ratio (↓: the edit lands near the true counterfactual)")
    ax.set_ylabel("x: donor oracle SR (↑: the donor's sub-factor lands)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def load_screened(preset: str) -> tuple:
    """A preset's trained network as a screen left it (``RESULTS_ROOT``, ``OVERRIDES``): (params, diffusion, data,
    net, inversion cache, donor prior, common shift), the prior and the shift fitted first where the overrides ask
    for them and the network has none."""
    overrides = {"results_root": os.environ["RESULTS_ROOT"]} if "RESULTS_ROOT" in os.environ else {}
    overrides.update(json.loads(os.environ.get("OVERRIDES", "{}")))
    params = resolve(preset, overrides)
    diffusion = load_diffusion(repo_path(params["base_model"]), "cpu")
    data = load_preset_data(params, diffusion.sample_size, params["n_val_per_class"])
    cache = inversion_cache(diffusion, params, data)
    checkpoint = results_dir(params) / "mapping" / "best.pt"
    net = load_mapping(checkpoint, "cpu")
    if params["donor_specificity"] != 1 and not (checkpoint.parent / "donor_prior.pt").exists():
        fit_donor_prior(diffusion, net, cache, data["train_bg"], data["train_tg"], params, checkpoint)
    if params["removal_common_shift"] != 0 and not (checkpoint.parent / "common_shift.pt").exists():
        fit_common_shift(diffusion, net, cache, data["train_bg"], data["train_tg"], params, checkpoint)
    return (params, diffusion, data, net, cache, load_donor_prior(params, checkpoint),
            load_common_shift(params, checkpoint))


def main() -> None:
    if sys.argv[1] == "--table":
        print(table(sys.argv[2:]))
        return
    if sys.argv[1] == "--frontier":
        frontier(sys.argv[2], sys.argv[3:])
        return
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    forms = os.environ.get("FORMS", "replace,residual").split(",")
    for preset in sys.argv[2:]:
        params, diffusion, data, net, cache, prior, shift = load_screened(preset)
        classifier = load_classifier(results_dir(params) / "classifier.pt")[0]
        models = preset_metric_models(params, "cpu")
        found = dict(preset=preset, results=str(results_dir(params)))
        for form in forms:
            t0 = time.time()
            p = {**params, "edit_form": form}
            alpha = choose_salient_strength(diffusion, net, cache, data, p, classifier, out / f"{preset}_alpha_{form}.csv",
                                            donor_prior=prior)
            beta = os.environ.get("BETA", "auto")
            if beta != "auto":
                beta = float(beta)
            else:
                beta = choose_salient_strength(diffusion, net, cache, data, p, classifier, out / f"{preset}_beta_{form}.csv",
                                               direction="remove", common_shift=shift)
            chosen = {**p, "salient_strength": alpha, "removal_strength": beta}
            found[form] = dict(alpha=alpha, beta=beta, rows=validation_rows(diffusion, net, cache, data, chosen, classifier,
                                                                             models, prior, shift),
                               minutes=round((time.time() - t0) / 60, 1))
            print(preset, form, json.dumps(found[form]), flush=True)
            write_text(out / f"{preset}.json", json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
