"""What notebooks 02–03 run for a preset: data in memory, the attribute classifier, training with
validation swap success, and the edits of held-out images."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .classifier import predict, swap_success, train_classifier
from .datasets import CLASSES, load_images, prepare_dataset
from .diffusion import Diffusion
from .edit import swap_salient
from .io import save_figure, save_torch
from .losses import LOSS_TERMS
from .mapping import MappingNetwork
from .train import InversionCache, TrainConfig, train_mapping


@dataclass
class Split:
    """One class's images of one split, with their manifest rows and cache keys."""

    rows: pd.DataFrame
    x: torch.Tensor

    @property
    def keys(self) -> list[str]:
        return list(self.rows["file"])


def load_preset_data(params: dict, image_size: int, n_val_per_class: int = 32) -> dict[str, Split]:
    """``train_bg``, ``train_tg``, ``val_bg``, ``val_tg``, ``test_bg``, ``test_tg``: the last
    ``n_val_per_class`` training images of each class are held out for validation."""
    manifest, dataset_dir = prepare_dataset(params, progress=False)
    out = {}
    for cls, tag in zip(CLASSES, ("bg", "tg")):
        for split in ("train", "test"):
            rows = manifest[(manifest["split"] == split) & (manifest["class"] == cls)].reset_index(drop=True)
            if split == "train":
                if len(rows) <= n_val_per_class:
                    raise ValueError(f"{dataset_dir}: {len(rows)} {cls} training images, need more than "
                                     f"n_val_per_class={n_val_per_class}")
                parts = {"train": rows.iloc[:-n_val_per_class], "val": rows.iloc[-n_val_per_class:]}
            else:
                parts = {"test": rows}
            for name, r in parts.items():
                r = r.reset_index(drop=True)
                out[f"{name}_{tag}"] = Split(r, load_images(dataset_dir, r["file"], image_size))
    return out


def fit_attribute_classifier(data: dict[str, Split], seed: int = 0, progress: bool = True):
    """The SR classifier on the training images; returns (model, test accuracy)."""
    x = torch.cat([data["train_bg"].x, data["train_tg"].x])
    y = torch.cat([torch.zeros(len(data["train_bg"].x)), torch.ones(len(data["train_tg"].x))])
    model = train_classifier(x, y, seed=seed, progress=progress)
    correct = torch.cat([~predict(model, data["test_bg"].x), predict(model, data["test_tg"].x)])
    return model, correct.float().mean().item()


def edit_pairs(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, bg: Split, tg: Split,
               n_steps: int, t_edit: int, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Background i takes target i's S; target i takes S = 0."""
    n = min(len(bg.x), len(tg.x)) if n is None else n
    xT_bg, xT_tg = cache(bg.keys[:n], bg.x[:n]), cache(tg.keys[:n], tg.x[:n])
    added, removed = swap_salient(diffusion, net.eval(), xT_bg, xT_tg, n_steps, t_edit)
    return added.cpu(), removed.cpu()


def train_preset(diffusion: Diffusion, data: dict[str, Split], cfg: TrainConfig, out_dir: str | Path,
                 classifier, inversion_dir: Path | None = None, lpips=None, id_embed=None,
                 progress: bool = True) -> MappingNetwork:
    """Train on ``train_*`` with validation swap success on ``val_*`` after every epoch."""
    cache = InversionCache(diffusion, cfg.n_steps, inversion_dir)

    def validate(net: MappingNetwork) -> dict:
        added, removed = edit_pairs(diffusion, net, cache, data["val_bg"], data["val_tg"], cfg.n_steps, cfg.t_edit)
        return swap_success(classifier, data["val_bg"].x, data["val_tg"].x, added, removed)

    return train_mapping(diffusion, data["train_bg"].x, data["train_tg"].x, data["train_bg"].keys,
                         data["train_tg"].keys, cfg, out_dir, validate=validate, id_embed=id_embed, lpips=lpips,
                         inversion_dir=inversion_dir, progress=progress)


def train_config(params: dict) -> TrainConfig:
    """The TrainConfig a preset's parameters describe."""
    return TrainConfig(arch=params["arch"], depth=params["depth"], t_edit=params["t_edit"], n_steps=params["ddim_steps"],
                       lr=params["lr"], epochs=params["epochs"], max_batches=params["train_batches"],
                       batch_per_class=params["batch_per_class"], kl_temperature=params["kl_temperature"],
                       validate_every=params["validate_every"], common_adversary=params["common_adversary"],
                       lambdas=params["lambdas"] or {t: 1.0 for t in LOSS_TERMS}, seed=params["seed"])


def inversion_dir(params: dict) -> Path:
    """Where inversions of this preset's images by this base model are cached (``cache/inversions``)."""
    from .presets import repo_path

    _, dataset_dir = prepare_dataset(params, progress=False)
    recorded = (dataset_dir / "dataset.json").read_text() if (dataset_dir / "dataset.json").exists() else ""
    key = hashlib.sha1(f"{params['base_model']}|{dataset_dir}|{recorded}".encode()).hexdigest()[:12]
    return repo_path("cache") / "inversions" / f"{dataset_dir.name}-{key}"


def save_classifier(model, accuracy: float, path: str | Path) -> None:
    save_torch(dict(state=model.state_dict(), test_accuracy=accuracy), path)


def load_classifier(path: str | Path):
    from .classifier import SmallCNN

    ck = torch.load(path, map_location="cpu", weights_only=True)
    model = SmallCNN()
    model.load_state_dict(ck["state"])
    return model.eval(), ck["test_accuracy"]


def plot_training(run_dir: str | Path, title: str = ""):
    """``loss_curves.png``: every loss term (mean per batch) and the validation swap success."""
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    log, val = pd.read_csv(run_dir / "train_log.csv"), pd.read_csv(run_dir / "val_log.csv")
    per_batch = log.groupby(["epoch", "batch"], sort=False).mean(numeric_only=True).reset_index(drop=True)
    terms = [c for c in LOSS_TERMS + ("total",) if c in per_batch]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.5))
    for term in terms:
        a.plot(per_batch.index + 1, per_batch[term], label=term, lw=2 if term == "total" else 1)
    a.set(yscale="log", xlabel="batch", ylabel="loss (mean over timesteps)", title=f"{title} training losses")
    a.legend(fontsize=7, ncol=2)
    for col in ("sr_add", "sr_remove", "sr"):
        b.plot(val["minutes"], val[col], marker="o", label=col)
    b.set(ylim=(-0.05, 1.05), xlabel="training minutes", ylabel="validation swap success", title="validation SR")
    b.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, run_dir / "loss_curves.png", dpi=110)
    return fig


def qualitative_grids(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, data: dict[str, Split],
                      params: dict, out_dir: str | Path, n: int = 8,
                      alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)) -> dict[str, np.ndarray]:
    """Fig. 6/7: rows original / reconstruction / edit (/ true counterfactual on toy presets), for
    adding the attribute to backgrounds (S from the paired target) and removing it from targets
    (S = 0); plus an S-strength strip h̃ = f(C, α·S) for one background with a target's S."""
    from .datasets import toy_counterfactuals
    from .edit import edit
    from .plotting import save_grid

    out_dir, steps, t_edit = Path(out_dir), params["ddim_steps"], params["t_edit"]
    bg, tg = data["test_bg"], data["test_tg"]
    xT_bg, xT_tg = cache(bg.keys[:n], bg.x[:n]), cache(tg.keys[:n], tg.x[:n])
    is_bg, is_tg = torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    added, removed = swap_salient(diffusion, net.eval(), xT_bg, xT_tg, steps, t_edit)
    grids = {}
    for name, split, xT, cls, edited in (("add", bg, xT_bg, is_bg, added), ("remove", tg, xT_tg, is_tg, removed)):
        rows = [split.x[:n], edit(diffusion, net, xT, cls, steps, "reconstruct", t_edit).cpu(), edited.cpu()]
        if params["dataset_kind"] == "toy":
            rows.append(toy_counterfactuals(split.rows.head(n), params["attribute"], split.x.shape[-1]))
        grids[name] = save_grid(rows, out_dir / f"qualitative_{name}.png", scale=4)
    strip = [edit(diffusion, net, xT_bg[:1], is_bg[:1], steps, "swap", t_edit, xT_tg[:1], is_tg[:1], alpha=a).cpu()
             for a in alphas]
    grids["strength"] = save_grid([torch.cat(strip)], out_dir / "salient_strength.png", scale=4)
    return grids


def image_term_models(cfg: TrainConfig, device) -> tuple[TrainConfig, object, object]:
    """The LPIPS and identity models the image terms need; a term whose weights are absent is
    switched off (λ = 0, recorded in the run's config) with one warning naming the file to place."""
    import warnings

    from .metrics import Unavailable, lpips_model

    lambdas = dict(cfg.lambdas)
    lpips = lpips_model(device) if lambdas["lpips"] > 0 else None
    if isinstance(lpips, Unavailable):
        warnings.warn(f"LPIPS loss term off: {lpips.reason}", stacklevel=1)
        lambdas["lpips"], lpips = 0.0, None
    if lambdas["id"] > 0:
        warnings.warn("ID loss term off: no identity encoder is available for this preset yet", stacklevel=1)
        lambdas["id"] = 0.0
    return replace(cfg, lambdas=lambdas), lpips, None
