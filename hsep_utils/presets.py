"""Presets: one YAML per attribute dataset in ``params/``, fed to papermill with ``-f``.

A preset names its data, base model and ``scale``; each scale fills in the sizes a notebook
parameter leaves as ``None``. Relative paths are relative to the repository root, so notebooks
run the same from JupyterLab, papermill or the batch runner.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from .toy import ATTRIBUTES as TOY_ATTRIBUTES

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS_DIR = REPO_ROOT / "params"

SCALES: dict[str, dict] = {
    # seconds: the notebook tests
    "smoke": dict(n_train_per_class=8, n_test_per_class=4, n_recon_images=4, hspace_steps=[5, 10],
                  n_val_per_class=2, ddim_steps=5, batch_per_class=2, train_batches=2, n_edit_images=4, validate_every=0,
                  ablation_batches=1, n_ablation_images=2, latent_warmup_steps=20, ema_decay=0.9,
                  ablation_grid=dict(t_edit=[400, 0], arch=["a"], depth=[8])),
    # what the default reproduction affords on a 2-core CPU: ~13 minutes of mapping-network training
    # (6000 latent warm-up updates, then 120 batches of 8 + 8 at ~4 s each, validated every 20); the
    # weights' average (ema_decay, ~10 batches) is what is validated and kept: single checkpoints swing
    # widely from one validation to the next (README "The mapping network on this model")
    "default": dict(n_train_per_class=1000, n_test_per_class=128, n_recon_images=32,
                    hspace_steps=[10, 20, 50, 100], n_val_per_class=16, ddim_steps=20, batch_per_class=8,
                    train_batches=120, n_edit_images=64, validate_every=20,
                    ablation_batches=6, n_ablation_images=32, latent_warmup_steps=6000, ema_decay=0.995,
                    ablation_grid=None),
    # the paper's sizes (10k/10k train, 3.5k/3.5k test), one full epoch
    "full": dict(n_train_per_class=10000, n_test_per_class=3500, n_recon_images=256,
                 hspace_steps=[10, 20, 50, 100, 200], n_val_per_class=100, ddim_steps=40, batch_per_class=8,
                 train_batches=None, n_edit_images=1000, validate_every=250,
                 ablation_batches=500, n_ablation_images=256, latent_warmup_steps=6000, ema_decay=0.999,
                 ablation_grid=None),
}

PRESET_KEYS: dict[str, str] = {
    "preset": "name, used for results/<preset>/",
    "dataset_kind": "toy | ffhq | celebahq | folders",
    "attribute": "the target attribute (toy: glasses, smile, age, gender)",
    "image_size": "pixels; the base model's sample size",
    "base_model": "local diffusers UNet2DModel directory, a Hugging Face id already cached, or a guided-diffusion "
                  "checkpoint: ffhq_p2.pt / celebahq_p2.pt by name (converted once, hsep_utils.adm)",
    "data_root": "where datasets are built / read",
    "results_root": "where results/<preset>/ goes",
    "seed": "every random choice derives from it",
    "scale": f"one of {', '.join(SCALES)}",
    "device": "cpu | cuda | auto (cuda when available)",
    "arch": "mapping-network architecture of Fig. 8: a | b | c | d",
    "depth": "conv blocks per encoder (the paper: 8 or 12)",
    "t_edit": "edit timesteps t >= t_edit (0: every step, 400: the noisy part)",
    "reverse_process": "asymmetric (the paper's Eq. 4, as Asyrp: predicted x0 from h̃, direction from h) | symmetric",
    "lr": "Adam learning rate of the mapping network",
    "epochs": "passes over the training images (train_batches caps the total)",
    "lambdas": "loss weights {term: value}; terms left out (or None) weigh 1",
    "kl_temperature": "softmax temperature of the KL term",
    "common_adversary": "beyond the paper: weight of a gradient-reversal class adversary on C (0: off)",
    "image_loss_every": "beyond the paper (faster): image losses (ID, pixel, LPIPS) on every k-th step only (1: every step)",
    "latent_warmup_steps": "beyond the paper (faster): updates of the latent terms alone on cached h trajectories "
                           "before the per-step training (0: off, as in the paper; None: the scale's, 6000, "
                           "which the toy presets take; the real presets set 0)",
    "ema_decay": "beyond the paper (steadier): validate, select and keep an exponential moving average of the "
                 "mapping network's weights, per optimiser step (0: off, the raw weights as in the paper; None: the "
                 "scale's, 0.995 at default, which the toy presets take; the real presets set 0)",
    # real datasets and bring-your-own folders (hsep_utils/real_data.py); None: the documented default
    "annotations": "ffhq: ffhq-features-dataset json/ folder; celebahq: CelebAMask-HQ-attribute-anno.txt",
    "images": "ffhq: images1024x1024/ (sub-folders 00000 … 69000, or flat); celebahq: CelebA-HQ-img/",
    "glasses_target": "ffhq glasses: kinds counted as target (default [ReadingGlasses, Sunglasses]; background NoGlasses)",
    "age_young": "ffhq age: [min, max] years of the background class (default [18, 30])",
    "age_old": "ffhq age: [min, max] years of the target class (default [50, 120])",
    "background_dir": "folders: images of the background class",
    "target_dir": "folders: images of the target class",
    "background_test_dir": "folders: optional held-out background images (with target_test_dir)",
    "target_test_dir": "folders: optional held-out target images (with background_test_dir)",
    "test_fraction": "folders without test folders: share of each class held out (default 0.2)",
    "facenet_weights": "ID: facenet-pytorch vggface2 file or its folder (None: the torch cache)",
    "inception_weights": "FID: clean-fid inception-2015-12-05.pt or its folder (None: clean-fid's cache)",
    "salient_strength": "beyond the paper: α of h̃ = f(C, α·S) when adding, notebooks 03–04 (1: the paper; auto: "
                        "notebook 02 picks the smallest α of 1 … 3 whose validation adding SR reaches "
                        "strength_target_sr with 90 % confidence, on toy presets the oracle SR too; notebook 04 "
                        "also reports α = 1 when the strength differs)",
    "strength_target_sr": "salient_strength auto: the validation adding SR asked for (default 0.9)",
    "scales": "a preset's own sizes at one scale, {scale: {key: value}}, e.g. {default: {ddim_steps: 50}}: "
              "they replace that scale's values there only (a key set outright still wins)",
    "ablation_grid": "notebook 05: {t_edit: [...], arch: [...], depth: [...]}; None: the paper's full grid",
    **{k: "overrides the scale's value" for k in SCALES["default"]},
}


CHOICES: dict[str, tuple] = dict(dataset_kind=("toy", "ffhq", "celebahq", "folders"), arch=("a", "b", "c", "d"),
                                 reverse_process=("asymmetric", "symmetric"))

NUMBER_KEYS: dict[str, type | tuple] = {
    **{k: int for k in ("image_size", "seed", "depth", "t_edit", "epochs", "image_loss_every", "latent_warmup_steps")},
    **{k: int for k, v in SCALES["default"].items() if isinstance(v, int)},
    **{k: (int, float) for k in ("lr", "kl_temperature", "common_adversary", "test_fraction", "ema_decay",
                                 "strength_target_sr")},
}


def known_presets() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def preset_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    candidate = PARAMS_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise FileNotFoundError(f"unknown preset {str(name_or_path)!r}: known presets are {', '.join(known_presets())}, "
                            f"or pass the path of a params YAML")


def load_preset(name_or_path: str | Path) -> dict:
    """The preset's parameters, checked: unknown keys and a bad ``scale`` are named with the allowed values."""
    path = preset_path(name_or_path)
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path} must be a mapping of parameter: value, got {type(params).__name__}")
    unknown = sorted(set(params) - set(PRESET_KEYS))
    if unknown:
        allowed = "\n".join(f"  {k}: {v}" for k, v in PRESET_KEYS.items())
        raise ValueError(f"{path}: unknown keys {unknown}. Allowed keys:\n{allowed}")
    if params.get("scale", "default") not in SCALES:
        raise ValueError(f"{path}: scale {params['scale']!r} is not one of {list(SCALES)}")
    if "preset" not in params:  # a notebook would fall back to its default name and overwrite results/toy-glasses/
        raise ValueError(f"{path} lacks the key 'preset' ({PRESET_KEYS['preset']}): add e.g. `preset: {path.stem}`")
    for key, allowed in CHOICES.items():
        if key in params and params[key] not in allowed:
            raise ValueError(f"{path}: {key} {params[key]!r} is not one of {list(allowed)}")
    if params.get("dataset_kind", "toy") == "toy" and params.get("attribute", "glasses") not in TOY_ATTRIBUTES:
        raise ValueError(f"{path}: toy attribute {params['attribute']!r} is not one of {list(TOY_ATTRIBUTES)}")
    strength = params.get("salient_strength")
    if strength is not None and strength != "auto" and (isinstance(strength, bool) or not isinstance(strength, (int, float))):
        raise ValueError(f"{path}: salient_strength must be a number or auto ({PRESET_KEYS['salient_strength']}), "
                         f"got {strength!r}")
    scales = params.get("scales") or {}
    if not isinstance(scales, dict) or any(k not in SCALES or not isinstance(v, dict) for k, v in scales.items()):
        raise ValueError(f"{path}: scales must map a scale ({', '.join(SCALES)}) to {{key: value}}, got {scales!r}")
    for scale, sizes in scales.items():
        unknown = sorted(set(sizes) - set(SCALES[scale]))
        if unknown:
            raise ValueError(f"{path}: scales.{scale} sets {unknown}, not sizes of a scale (allowed: {', '.join(SCALES[scale])})")
    for key, kind in NUMBER_KEYS.items():
        for where, value in [(key, params.get(key))] + [(f"scales.{n}.{key}", v.get(key)) for n, v in scales.items()]:
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                name = "an integer" if kind is int else "a number"
                raise ValueError(f"{path}: {where} must be {name} ({PRESET_KEYS[key]}), got {value!r}")
    return params


def with_scale(params: dict) -> dict:
    """Fill every ``None`` size from the preset's scale: the preset's own ``scales[scale]`` first,
    then the scale's. A preset's sizes for one scale stay out of the others (``-p scale smoke``
    stays a smoke run)."""
    scale = params.get("scale", "default")
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} is not one of {list(SCALES)}")
    sizes = {**SCALES[scale], **((params.get("scales") or {}).get(scale) or {})}
    return {**params, **{k: v for k, v in sizes.items() if k not in params or params[k] is None}}


def repo_path(p: str | Path) -> Path:
    """A path from a preset, made absolute against the repository root when relative."""
    p = Path(p).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def results_dir(params: dict) -> Path:
    d = repo_path(params["results_root"]) / params["preset"]
    d.mkdir(parents=True, exist_ok=True)
    return d


SMOKE_ENV = "HSEP_SMOKE_DIR"
"""Set to a folder, it turns every notebook into a smoke run writing there (nbval in CI)."""


def from_namespace(ns: dict) -> dict:
    """The preset keys of a notebook's namespace (its parameters cell), sizes filled from the scale,
    switched to the smoke run by ``HSEP_SMOKE_DIR`` (``smoke_switch``)."""
    return with_scale(smoke_switch({k: ns[k] for k in PRESET_KEYS if k in ns}))


def smoke_switch(params: dict) -> dict:
    """With the environment variable ``HSEP_SMOKE_DIR`` set, the run is switched to the smoke scale
    and its data and results go to that folder, so executing the committed notebooks as they are
    (nbval) stays short and leaves ``results/`` alone."""
    smoke = os.environ.get(SMOKE_ENV)
    if not smoke:
        return params
    params = {k: v for k, v in params.items() if k not in SCALES["smoke"]}
    return {**params, "scale": "smoke", "data_root": f"{smoke}/data", "results_root": f"{smoke}/results"}


def device_of(params: dict) -> str:
    import torch

    from .distributed import local_device

    d = params.get("device", "auto")
    return local_device(("cuda" if torch.cuda.is_available() else "cpu") if d == "auto" else d)
