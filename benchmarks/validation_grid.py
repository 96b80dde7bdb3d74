"""Notebook 03's grids on the validation split instead of the sealed one: what a screened network's edits look like,
to judge a trade (e.g. more of the donor's sub-factor against a face that moves) without reading the sealed split.

    RESULTS_ROOT=ROOT OVERRIDES='{"removal_cycle": 15}' python benchmarks/validation_grid.py OUTDIR PRESET

``RESULTS_ROOT`` and ``OVERRIDES`` as in ``edit_form.py`` (the network is ``ROOT/PRESET/mapping/best.pt``, α and β
those notebook 02 chose for it). Writes ``OUTDIR/qualitative_{add,remove}.png`` (rows: original / reconstruction /
edit / true counterfactual) and ``OUTDIR/salient_strength.png``."""
import sys
from pathlib import Path

from edit_form import load_screened

from hsep_utils.qualitative import qualitative_grids


def main() -> None:
    out, preset = Path(sys.argv[1]), sys.argv[2]
    out.mkdir(parents=True, exist_ok=True)
    params, diffusion, data, net, cache, prior, shift = load_screened(preset)
    validation = {**data, "test_bg": data["val_bg"], "test_tg": data["val_tg"]}  # the grids read test_*
    qualitative_grids(diffusion, net, cache, validation, params, out, n=8, donor_prior=prior, common_shift=shift)


if __name__ == "__main__":
    main()
