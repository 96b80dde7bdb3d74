"""How much mapping-network training does toy-glasses need? One run per recipe (DDIM steps, latent
warm-up updates, training batches, validation interval, best.pt floor), each evaluated on the
preset's validation split with notebook 04's table rows at every validation, not only at best.pt:
the curve says whether longer training helps and whether ``best.pt`` picks the right checkpoint. It
chooses recipes, so it never reads the test split (earlier runs did: docs/experiments.md).

    python benchmarks/mapping_budget.py OUTDIR RECIPE [RECIPE ...]

A recipe is ``name:key=value,...`` with keys ``steps`` (ddim_steps), ``warmup``
(latent_warmup_steps), ``pool`` (latent_warmup_pool), ``wlr`` (latent_warmup_lr), ``batches`` (train_batches), ``every`` (validate_every), ``floor``
(TrainConfig.min_recon_psnr), ``lr``, ``cons`` (λ of the consistency term), ``sil`` (λ of the silence term),
``ema`` (TrainConfig.ema_decay), the method's options ``kl`` (kl_head), ``bgs`` (background_salient), ``cs``
(consistency_scale), ``adv`` (common_adversary), ``klp`` (kl_pairing), ``klt`` (kl_temperature), ``cls``
(classification_loss), ``iw`` (image_term_weighting), and ``tables`` (tabulate the first that many validations
only, and not ``best.pt``: e.g. ``batches=1,tables=1`` scores the network right after the latent warm-up).
Missing keys take the preset's default scale. Writes ``OUTDIR/<name>.json``: the recipe, the validation log, and one table
row (on validation) per validated checkpoint (x / y: classifier SR, oracle SR, CF MSE ratio, PSNR, ID) plus the row
of ``best.pt``; checkpoints go to ``$WORK`` (default OUTDIR), inversions to the preset's cache. Runs on CUDA when available; on a CPU, ``SMOKE=1`` shrinks it to a smoke run.
"""
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from hsep_utils import preset_training
from hsep_utils.classifier import fit_attribute_classifier, load_classifier
from hsep_utils.diffusion import load_diffusion
from hsep_utils.evaluation import preset_metric_models
from hsep_utils.io import write_text
from hsep_utils.parameters import complete
from hsep_utils.presets import load_preset, repo_path
from hsep_utils.quantitative import quantitative_rows
from hsep_utils.splits import inversion_cache, inversion_dir, load_preset_data
from hsep_utils.train import load_mapping

KEYS = dict(steps="ddim_steps", warmup="latent_warmup_steps", pool="latent_warmup_pool", wlr="latent_warmup_lr",
            batches="train_batches", every="validate_every",
            kl="kl_head", bgs="background_salient", cs="consistency_scale", adv="common_adversary", klp="kl_pairing",
            klt="kl_temperature", cls="classification_loss", iw="image_term_weighting")
KEEP = ("sr", "oracle_sr", "oracle_sr_donor", "donor_match", "cf_mse_ratio", "psnr", "psnr_outside", "id")


def parse(recipe: str) -> tuple[str, dict]:
    name, _, spec = recipe.partition(":")

    def value(k: str, v: str):
        if k in ("kl", "bgs", "cs", "klp", "cls", "iw"):
            return v
        return float(v) if k in ("floor", "lr", "wlr", "cons", "sil", "ema", "adv", "klt") else int(v)
    return name, {k: value(k, v) for k, v in (kv.split("=") for kv in spec.split(",") if kv)}


def validation_rows(diffusion, net, cache, data, params, classifier, models, donor_prior=None, common_shift=None) -> dict:
    """Notebook 04's rows, computed on the validation split (``val_*`` as ``test_*``)."""
    val = {"test_bg": data["val_bg"], "test_tg": data["val_tg"]}
    rows = quantitative_rows(diffusion, net, cache, val, params, classifier, models, params["n_edit_images"], donor_prior,
                             common_shift)
    return {r["domain"]: {k: round(r[k], 4) for k in KEEP if isinstance(r.get(k), float)} for r in rows}


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    for recipe in sys.argv[2:]:
        name, spec = parse(recipe)
        params = load_preset("toy-glasses")
        params.update({KEYS[k]: v for k, v in spec.items() if k in KEYS})
        if os.environ.get("SMOKE"):
            params.update(scale="smoke", data_root=str(out / "smoke" / "data"), results_root=str(out / "smoke" / "results"),
                          train_batches=2, validate_every=1, latent_warmup_steps=20, ddim_steps=5, salient_strength=1.0)
        params = complete(params)
        t0 = time.time()
        diffusion = load_diffusion(repo_path(params["base_model"]), dev)
        data = load_preset_data(params, diffusion.sample_size, params["n_val_per_class"])
        saved = repo_path("results/toy-glasses/classifier.pt")
        classifier = (load_classifier(saved)[0] if saved.exists() and not os.environ.get("SMOKE")
                      else fit_attribute_classifier(data, params["seed"], progress=False)[0])
        classifier = classifier.to(dev)
        models = preset_metric_models(params, dev)
        cfg, lpips, id_embed = preset_training.image_term_models(preset_training.train_config(params), dev, params)
        if "floor" in spec:
            cfg = replace(cfg, min_recon_psnr=spec["floor"])
        if "lr" in spec:
            cfg = replace(cfg, lr=spec["lr"])
        if "ema" in spec:
            cfg = replace(cfg, ema_decay=spec["ema"])
        for key, term in (("cons", "consistency"), ("sil", "silence")):
            if key in spec:
                cfg = replace(cfg, lambdas={**cfg.lambdas, term: spec[key]})
        work = Path(os.environ.get("WORK", out))  # checkpoints; OUTDIR gets the JSON
        inv = inversion_dir(params)  # the preset's cache, shared with the notebooks
        cache = inversion_cache(diffusion, params, data)
        found = dict(recipe=recipe, device_name=torch.cuda.get_device_name() if dev == "cuda" else "cpu",
                     train=dict(cfg.__dict__), curve=[])

        def write() -> None:
            found["minutes"] = round((time.time() - t0) / 60, 2)
            write_text(out / f"{name}.json", json.dumps(found, indent=1, default=str))

        def validate_and_tabulate(validate):
            """The preset's validation, then the table rows of the same network on validation (written at once, so
            a run cut short still reports its curve)."""
            def v(net):
                metrics = validate(net)
                point = dict(val={k: round(float(x), 4) for k, x in metrics.items()})
                if len(found["curve"]) < spec.get("tables", math.inf):
                    point["table"] = validation_rows(diffusion, net, cache, data, params, classifier, models)
                found["curve"].append(point)
                write()
                print(name, len(found["curve"]), found["curve"][-1], flush=True)
                return metrics
            return v

        train_mapping = preset_training.train_mapping
        preset_training.train_mapping = lambda *a, validate=None, **k: train_mapping(*a, validate=validate_and_tabulate(validate),
                                                                                      **k)
        run = work / "runs" / name
        preset_training.train_preset(diffusion, data, cfg, run, classifier, inv, lpips=lpips, id_embed=id_embed, progress=False,
                                     n_recon_per_class=params["n_val_recon_per_class"])
        preset_training.train_mapping = train_mapping
        found["val_log"] = pd.read_csv(run / "val_log.csv").round(4).to_dict("records")
        if "tables" not in spec:
            found["best"] = validation_rows(diffusion, load_mapping(run / "best.pt", dev), cache, data, params,
                                            classifier, models)
        write()
        print(name, "best", json.dumps(found.get("best")), flush=True)


if __name__ == "__main__":
    main()
