"""Bring your own: a preset from any two folders of images (background class, target class).

    python -m data_prep.folders --name my-hats --background imgs/no_hat --target imgs/hat \\
        --base-model google/ddpm-ema-celebahq-256            # an existing diffusers UNet2DModel
    python -m data_prep.folders --name my-hats --background imgs/no_hat --target imgs/hat \\
        --train-base-model --size 64 --base-option steps 20000   # a new domain: train the base DDPM first
    python -m hsep_utils.reproduce --preset params/my-hats.yaml  # then run every notebook on it

Images are found recursively, centre-cropped to squares and resized once to the model's resolution.
Held-out images come from ``--background-test`` / ``--target-test`` folders, or else a seeded
``--test-fraction`` of each class; the classes are balanced and the sizes capped by ``--scale``
(or ``--n-train-per-class`` / ``--n-test-per-class``). ``--train-base-model`` trains the toy
world's base-DDPM trainer (``hsep_utils.base_ddpm``) on the training images of both classes; it
resumes from its checkpoint when run again. The preset is written to ``params/<name>.yaml``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from hsep_utils.parameters import SCALES, complete
from hsep_utils.presets import PARAMS_DIR, repo_path
from hsep_utils.real_data import FOLDERS_DEFAULTS, prepare_real_dataset, print_report


def model_size(base_model: str) -> int:
    """The sample size of a diffusers UNet2DModel (local directory or cached Hugging Face id)."""
    from hsep_utils.diffusion import load_diffusion

    return load_diffusion(repo_path(base_model)).sample_size


def train_base_model(manifest, dataset_dir: Path, out: Path, size: int, options: dict) -> Path:
    """Train (or resume) a base DDPM on the training images of both classes; returns its directory."""
    from hsep_utils import base_ddpm
    from hsep_utils.datasets import load_images
    from hsep_utils.io import write_text

    files = manifest[manifest["split"] == "train"]["file"]
    base_ddpm.train(data=load_images(dataset_dir, files, size), out=str(out), size=size, **options)
    write_text(out / "data.json", json.dumps(dict(dataset=str(dataset_dir), images=len(files),
                                                  note="trained on this dataset's train split, both classes"),
                                             indent=2))
    return out


def make_preset(name: str, background: str, target: str, base_model: str | None = None, attribute: str | None = None,
                background_test: str | None = None, target_test: str | None = None,
                test_fraction: float = FOLDERS_DEFAULTS["test_fraction"], size: int | None = None,
                scale: str = "default", n_train_per_class: int | None = None, n_test_per_class: int | None = None,
                seed: int = 0, data_root: str = "data", results_root: str = "results",
                base_options: dict | None = None, base_out: str | None = None,
                params_out: str | Path | None = None, progress: bool = True, ddim_steps: int | str = "auto") -> Path:
    """Build the dataset, train the base model when ``base_model`` is None, write the preset YAML;
    returns the YAML's path."""
    from hsep_utils.base_ddpm import DEFAULTS as BASE_DEFAULTS

    if base_model is not None and base_options:
        raise ValueError("base options only apply with --train-base-model")
    model_res = model_size(base_model) if base_model is not None else None
    if size is not None and model_res is not None and size != model_res:
        raise ValueError(f"--size {size} differs from the base model's sample size {model_res}: leave --size out")
    size = size or model_res or BASE_DEFAULTS["size"]
    params_out = Path(params_out) if params_out else PARAMS_DIR / f"{name}.yaml"
    if params_out.exists() and (yaml.safe_load(params_out.read_text()) or {}).get("dataset_kind") != "folders":
        raise FileExistsError(f"{params_out} exists and is not a bring-your-own preset: choose another --name")
    tests = dict(background_test_dir=background_test, target_test_dir=target_test) if background_test else \
        dict(test_fraction=test_fraction)
    params = dict(preset=name, dataset_kind="folders", attribute=attribute or Path(target).resolve().name,
                  image_size=size, base_model=base_model, data_root=data_root, results_root=results_root, seed=seed,
                  scale=scale, background_dir=str(Path(background).resolve()), target_dir=str(Path(target).resolve()),
                  **{k: str(Path(v).resolve()) if k.endswith("_dir") else v for k, v in tests.items()},
                  n_train_per_class=n_train_per_class, n_test_per_class=n_test_per_class, ddim_steps=ddim_steps)
    manifest, dataset_dir = prepare_real_dataset(complete(params), progress)
    if progress:
        print_report(manifest, dataset_dir)
    if base_model is None:
        out = repo_path(base_out or f"models/{name}-ddpm-{size}px")
        params["base_model"] = str(train_base_model(manifest, dataset_dir, out, size, base_options or {}))
        if {**BASE_DEFAULTS, **(base_options or {})}["cut_skip_levels"]:
            from hsep_utils.base_ddpm import CUT_SKIPS_T_EDIT_MAX

            params["t_edit_max"] = CUT_SKIPS_T_EDIT_MAX
    from hsep_utils.io import write_text

    header = f"# Bring-your-own preset written by data_prep.folders\n# python -m hsep_utils.reproduce --preset {params_out}\n"
    write_text(params_out, header + yaml.safe_dump({k: v for k, v in params.items() if v is not None}, sort_keys=False))
    return params_out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="preset name: params/<name>.yaml, results/<name>/")
    ap.add_argument("--background", required=True, help="folder of background-class images")
    ap.add_argument("--target", required=True, help="folder of target-class images")
    ap.add_argument("--attribute", help="what the target class has (default: the target folder's name)")
    ap.add_argument("--background-test", help="held-out background images (with --target-test)")
    ap.add_argument("--target-test", help="held-out target images (with --background-test)")
    ap.add_argument("--test-fraction", type=float, default=FOLDERS_DEFAULTS["test_fraction"],
                    help="without test folders: share of each class held out")
    model = ap.add_mutually_exclusive_group(required=True)
    model.add_argument("--base-model", help="local diffusers UNet2DModel directory or cached Hugging Face id")
    model.add_argument("--train-base-model", action="store_true", help="train a base DDPM on the training images")
    ap.add_argument("--base-option", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="an option of hsep_utils.base_ddpm (VALUE parsed as YAML), e.g. steps 20000")
    ap.add_argument("--base-out", help="where the trained base model goes (default models/<name>-ddpm-<size>px)")
    ap.add_argument("--size", type=int, help="resolution (default: the base model's, or the trainer's default)")
    ap.add_argument("--scale", choices=list(SCALES), default="default", help="caps the per-class sizes")
    ap.add_argument("--n-train-per-class", type=int, help="overrides the scale")
    ap.add_argument("--n-test-per-class", type=int, help="overrides the scale")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--results-root", default="results")
    ap.add_argument("--params-out", help="preset YAML to write (default params/<name>.yaml)")
    ap.add_argument("--ddim-steps", type=int, help="DDIM steps of training and editing (default: auto, the fewest "
                    "steps whose reconstructions reach ddim_steps_min_psnr in notebook 01)")
    a = ap.parse_args(argv)
    base_options = {k: yaml.safe_load(v) for k, v in a.base_option}
    base_options = {k: tuple(v) if isinstance(v, list) else v for k, v in base_options.items()}
    path = make_preset(a.name, a.background, a.target, a.base_model, a.attribute, a.background_test, a.target_test,
                       a.test_fraction, a.size, a.scale, a.n_train_per_class, a.n_test_per_class, a.seed, a.data_root,
                       a.results_root, base_options, a.base_out, a.params_out, ddim_steps=a.ddim_steps or "auto")
    print(f"preset written: {path}\nrun it: python -m hsep_utils.reproduce --preset {path}")


if __name__ == "__main__":
    main()
