"""Notebook 03's grids on the validation split instead of the sealed one: what a screened network's edits look like,
to judge a trade (e.g. more of the donor's sub-factor against a face that moves) without reading the sealed split.

    RESULTS_ROOT=ROOT OVERRIDES='{"removal_cycle": 15}' python benchmarks/validation_grid.py OUTDIR PRESET

``RESULTS_ROOT`` and ``OVERRIDES`` as in ``edit_form.py`` (the network is ``ROOT/PRESET/mapping/best.pt``, α and β
those notebook 02 chose for it). Writes ``OUTDIR/qualitative_{add,remove}.png`` (rows: original / reconstruction /
edit / true counterfactual) and ``OUTDIR/salient_strength.png``."""
import json
import os
import sys
from pathlib import Path

from hsep_utils.common_shift import load_common_shift
from hsep_utils.diffusion import load_diffusion
from hsep_utils.donor_prior import load_donor_prior
from hsep_utils.presets import repo_path, resolve, results_dir
from hsep_utils.qualitative import qualitative_grids
from hsep_utils.splits import inversion_cache, load_preset_data
from hsep_utils.train import load_mapping


def main() -> None:
    out, preset = Path(sys.argv[1]), sys.argv[2]
    out.mkdir(parents=True, exist_ok=True)
    overrides = {"results_root": os.environ["RESULTS_ROOT"]} if "RESULTS_ROOT" in os.environ else {}
    overrides.update(json.loads(os.environ.get("OVERRIDES", "{}")))
    params = resolve(preset, overrides)
    diffusion = load_diffusion(repo_path(params["base_model"]), "cpu")
    data = load_preset_data(params, diffusion.sample_size, params["n_val_per_class"])
    validation = {**data, "test_bg": data["val_bg"], "test_tg": data["val_tg"]}  # the grids read test_*
    checkpoint = results_dir(params) / "mapping" / "best.pt"
    qualitative_grids(diffusion, load_mapping(checkpoint, "cpu"), inversion_cache(diffusion, params, data), validation,
                      params, out, n=8, donor_prior=load_donor_prior(params, checkpoint),
                      common_shift=load_common_shift(params, checkpoint))


if __name__ == "__main__":
    main()
