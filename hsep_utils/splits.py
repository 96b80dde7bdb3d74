"""A preset's images by split: the dataset built or reused, the six splits notebooks 02–05 read
(training, validation held out of it, test; background and target), and where their inversions
are cached."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .datasets import CLASSES, build_toy_dataset, build_toy_sealed
from .images import Images, as_images
from .presets import repo_path
from .real_data import prepare_real_dataset


def prepare_dataset(params: dict, progress: bool = True) -> tuple[pd.DataFrame, Path]:
    """Build (or reuse) the preset's dataset: toy, or ffhq / celebahq / folders (``real_data``); returns
    (manifest, folder)."""
    kind = params["dataset_kind"]
    if kind == "toy":
        return build_toy_dataset(repo_path(params["data_root"]), params["attribute"], params["n_train_per_class"],
                                 params["n_test_per_class"], params["image_size"], params["seed"], progress)
    return prepare_real_dataset(params, progress)


@dataclass
class Split:
    """One class's images of one split, with their manifest rows and cache keys. ``x`` decodes
    images when indexed (``images.Images``); a tensor given here is wrapped, not copied."""

    rows: pd.DataFrame
    x: Images

    def __post_init__(self) -> None:
        self.x = as_images(self.x)

    @property
    def keys(self) -> list[str]:
        return list(self.rows["file"])


def load_preset_data(params: dict, image_size: int, n_val_per_class: int = 32) -> dict[str, Split]:
    """``train_bg``, ``train_tg``, ``val_bg``, ``val_tg``, ``test_bg``, ``test_tg``: the last
    ``n_val_per_class`` training images of each class are held out for validation. Nothing is decoded
    here: each split reads its files when used (``images.Images``), so a notebook that never touches
    the training images never reads them, and each accelerate process reads only its share. A toy preset with
    ``test_seed`` takes ``test_*`` from its sealed population (``datasets.build_toy_sealed``)."""
    manifest, dataset_dir = prepare_dataset(params, progress=False)
    test_manifest, test_dir = manifest, dataset_dir
    if params["dataset_kind"] == "toy" and params.get("test_seed") is not None:
        test_manifest, test_dir = build_toy_sealed(repo_path(params["data_root"]), params["attribute"],
                                                   params["n_train_per_class"], params["n_test_per_class"],
                                                   params["image_size"], params["seed"], params["test_seed"], False)
    out = {}
    for cls, tag in zip(CLASSES, ("bg", "tg")):
        for split in ("train", "test"):
            m, folder = (manifest, dataset_dir) if split == "train" else (test_manifest, test_dir)
            rows = m[(m["split"] == split) & (m["class"] == cls)].reset_index(drop=True)
            if split == "train":
                if len(rows) <= n_val_per_class:
                    raise ValueError(f"{dataset_dir}: {len(rows)} {cls} training images, need more than "
                                     f"n_val_per_class={n_val_per_class}")
                parts = {"train": rows.iloc[:-n_val_per_class], "val": rows.iloc[-n_val_per_class:]}
            else:
                parts = {"test": rows}
            for name, r in parts.items():
                r = r.reset_index(drop=True)
                out[f"{name}_{tag}"] = Split(r, Images.files(folder, r["file"], image_size))
    return out


def inversion_cache(diffusion, params: dict, data: dict[str, Split]):
    """The preset's ``InversionCache``: its DDIM steps, its folder (``inversion_dir``), ``eval_batch_size``
    images per inversion and per edit of the splits, each split of ``data`` inverted in its canonical
    groups (``InversionCache.register``: the same numbers whatever the cache's history)."""
    from .train import InversionCache

    cache = InversionCache(diffusion, params["ddim_steps"], inversion_dir(params), params["eval_batch_size"])
    for split in data.values():
        cache.register(split.keys, split.x)
    return cache


def inversion_dir(params: dict) -> Path:
    """Where inversions of this preset's images by this base model at its ``unet_dtype`` are cached: ``<cache_root>/inversions``,
    ``cache_root`` by default ``cache/`` beside ``data_root`` (a run on other data caches beside it)."""
    from .diffusion import model_fingerprint

    _, dataset_dir = prepare_dataset(params, progress=False)
    recorded = (dataset_dir / "dataset.json").read_text() if (dataset_dir / "dataset.json").exists() else ""
    model = model_fingerprint(repo_path(params["base_model"]))
    precision = "" if params.get("unet_dtype", "fp32") in (None, "fp32") else f"|{params['unet_dtype']}"
    key = hashlib.sha1(f"{model}|{dataset_dir}|{recorded}{precision}".encode()).hexdigest()[:12]
    root = repo_path(params["cache_root"]) if params.get("cache_root") else repo_path(params["data_root"]).parent / "cache"
    return root / "inversions" / f"{dataset_dir.name}-{key}"
