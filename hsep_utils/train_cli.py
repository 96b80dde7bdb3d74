"""Notebook 02 as a command, for training where a notebook cannot run: several GPUs with
``accelerate launch``, or a batch job.

    python -m hsep_utils.train_cli --preset celebahq-smile                # one process
    accelerate launch --multi_gpu --num_processes 4 -m hsep_utils.train_cli --preset celebahq-smile

Writes what notebook 02 writes (``results/<preset>/classifier.pt``, ``judge.pt``, ``mapping/``); notebooks 03–05
then run as usual. Every process reads the same data and takes its share of each batch
(``hsep_utils.distributed``); the attribute classifier is fitted once, by the main process, or
reused when ``classifier.pt`` exists. ``batch_per_class`` is the global batch per class: a multiple
of the number of processes.
"""
from __future__ import annotations

import argparse
import sys

import yaml


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True, help="preset name or params YAML")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="override one parameter (VALUE parsed as YAML)")
    args = ap.parse_args(argv)

    from . import presets
    from .classifier import fit_attribute_classifier, load_classifier, save_classifier
    from .distributed import ranks
    from .plotting import plot_training
    from .preset_training import image_term_models, train_config, train_preset
    from .splits import inversion_dir, load_preset_data

    r = ranks()
    params = presets.resolve(args.preset, {k: yaml.safe_load(v) for k, v in args.param})
    out = presets.results_dir(params)
    diffusion = presets.diffusion_of(params)
    data = load_preset_data(params, diffusion.sample_size, params["n_val_per_class"])
    if r.is_main and not (out / "classifier.pt").exists():  # as notebook 02: one picks checkpoints, one judges
        for role, file in (("selection", "classifier.pt"), ("judge", "judge.pt")):
            save_classifier(*fit_attribute_classifier(data, params["seed"], role=role), out / file)
    r.barrier()
    classifier, accuracy = load_classifier(out / "classifier.pt")
    classifier.to(diffusion.device)
    cfg, lpips, id_embed = image_term_models(train_config(params), diffusion.device, params)
    if r.is_main:
        print(f"attribute classifier test accuracy {accuracy:.3f}; {r.world} process(es); {cfg}", flush=True)
    train_preset(diffusion, data, cfg, out / "mapping", classifier, inversion_dir(params), lpips=lpips,
                 id_embed=id_embed, eval_batch_size=params["eval_batch_size"],
                 n_recon_per_class=params["n_val_recon_per_class"])
    if r.is_main:
        plot_training(out / "mapping", params["preset"])
        print(f"wrote {out / 'mapping'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
