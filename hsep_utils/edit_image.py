"""Edit your own image with a trained preset: add the target attribute (a donor's salient factors)
or remove it (S = 0).

    python -m hsep_utils.edit_image --preset toy-glasses face.png --add [--alpha 2] [--donor other.png] --out out.png
    python -m hsep_utils.edit_image --preset toy-glasses face.png --remove --out out.png

The image is centre-cropped to a square and resized (Lanczos) to the base model's size, inverted with
the preset's DDIM steps, edited from the preset's ``t_edit`` with its reverse process, and saved as a
PNG at that size. Adding takes the donor's S; without ``--donor``, the first target image of the
preset's test split (notebook 00 builds it). The mapping network is the preset's
``results/<preset>/mapping/best.pt`` (notebook 02); α defaults to the preset's salient strength.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from .datasets import square_resize
from .images import open_rgb
from .plotting import from_uint8, to_uint8


def read_image(path: str | Path, size: int) -> tuple[torch.Tensor, list[str]]:
    """(1, 3, size, size) in [-1, 1] from any image file PIL reads, and what was done to it
    (mode conversion, centre crop, resize); an unreadable file raises an error naming it."""
    img, note = open_rgb(Path(path), "pass a PNG or JPEG image")
    said = [note] if note else []
    w, h = img.size
    side = min(w, h)
    if w != h:
        said.append(f"centre-cropped {w}×{h} to {side}×{side}")
    if side != size:
        said.append(f"resized {side}×{side} to {size}×{size}")
    return from_uint8(np.array(square_resize(img, size))[None]), said


def mapping_file(params: dict) -> Path:
    """The preset's trained mapping network, or an error naming the file and the notebook that writes it."""
    from .presets import repo_path

    path = repo_path(params["results_root"]) / params["preset"] / "mapping" / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train the mapping network of preset {params['preset']} "
                                f"first (notebook 02: `python -m hsep_utils.reproduce --preset {params['preset']} "
                                f"--notebooks 00 02`)")
    return path


def first_test_image(params: dict, cls: str, size: int) -> tuple[torch.Tensor, str]:
    """The first ``cls`` (background | target) image of the preset's test split — the sealed
    population when the preset sets ``test_seed``, as notebooks 03–05 score — (1, 3, size, size), and
    its file: adding's default donor, and notebook 06's default image."""
    from .splits import load_preset_data

    split = load_preset_data(params, size, params["n_val_per_class"])["test_bg" if cls == "background" else "test_tg"]
    return split.x[[0]], split.keys[0]


@torch.no_grad()
def edit_image(diffusion, net, params: dict, x: torch.Tensor, add: bool, alphas: list[float] = (1.0,),
               donor: torch.Tensor | None = None) -> torch.Tensor:
    """Edits of images ``x`` (N, 3, H, W), (len(alphas) · N, 3, H, W): the attribute added with
    ``donor``'s S (one donor per image, or one for all) times each α, or removed (α unused: S′ = (1 − β)·S
    at the preset's removal strength β, 1 being S = 0). Adding with a ``donor_specificity`` below 1 pulls the donor's S toward the preset's
    ``donor_prior``, removing with a ``removal_common_shift`` above 0 moves C by the preset's ``common_shift`` (both
    written beside its mapping network by notebook 02)."""
    from .common_shift import load_common_shift
    from .donor_prior import load_donor_prior
    from .edit import edit
    from .parameters import edit_settings, is_asymmetric
    from .strength import salient_strength

    steps, t_edit, asym, device = params["ddim_steps"], params["t_edit"], is_asymmetric(params), diffusion.device
    settings = edit_settings(params)
    xT = diffusion.invert(x.to(device), steps)
    n = len(x)
    if not add:
        return edit(diffusion, net, xT, torch.ones(n, dtype=torch.bool), steps, "remove", t_edit,
                    alpha=salient_strength(params, "remove"), asymmetric=asym, batch_size=params["eval_batch_size"],
                    common_shift=load_common_shift(params, mapping_file(params)), **settings).cpu()
    donor_xT = diffusion.invert(donor.to(device), steps).expand(n, -1, -1, -1)
    prior = load_donor_prior(params, mapping_file(params))
    bg, tg = torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    return torch.cat([edit(diffusion, net, xT, bg, steps, "swap", t_edit, donor_xT, tg, alpha, asym,
                           params["eval_batch_size"], donor_prior=prior, **settings).cpu()
                      for alpha in alphas])


def load_for_editing(preset: str, overrides: dict | None = None):
    """(params, diffusion, mapping network) of a trained preset (``HSEP_SMOKE_DIR`` switches it to the
    smoke run, as the notebooks)."""
    from . import presets
    from .train import load_mapping

    params = presets.resolve(preset, overrides)
    net_path = mapping_file(params)
    diffusion = presets.diffusion_of(params)
    return params, diffusion, load_mapping(net_path, diffusion.device).eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", help="the image to edit (any size; PNG, JPEG, …)")
    ap.add_argument("--preset", required=True, help="a trained preset (name or params YAML)")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--add", action="store_true", help="add the target attribute (the image shows it not)")
    what.add_argument("--remove", action="store_true", help="remove the target attribute (the image shows it)")
    ap.add_argument("--alpha", type=float, help="salient strength of the added S (default: the preset's)")
    ap.add_argument("--donor", help="adding: the image whose salient factors are added (default: the first "
                                    "target test image)")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="override one preset parameter (VALUE parsed as YAML)")
    a = ap.parse_args(argv)
    if a.remove and (a.donor or a.alpha is not None):
        ap.error("--donor and --alpha apply to --add only")

    from .io import save_image
    from .strength import salient_strength

    params, diffusion, net = load_for_editing(a.preset, {k: yaml.safe_load(v) for k, v in a.param})
    size = diffusion.sample_size
    x, said = read_image(a.image, size)
    for s in said:
        print(f"{a.image}: {s}")
    donor = None
    if a.add:
        donor = read_image(a.donor, size)[0] if a.donor else first_test_image(params, "target", size)[0]
    alpha = (a.alpha if a.alpha is not None else salient_strength(params)) if a.add else 1.0
    edited = edit_image(diffusion, net, params, x, a.add, [alpha], donor)
    save_image(to_uint8(edited)[0], a.out)
    print(f"wrote {a.out} ({'added' if a.add else 'removed'} {params.get('attribute', 'the attribute')}"
          + (f", α = {alpha:g}, donor {a.donor or 'the first target test image'}" if a.add else "") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
