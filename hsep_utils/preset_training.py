"""Training a preset's mapping network (notebook 02, ``train_cli``): its ``TrainConfig`` from the
parameters, the networks the image terms need, validation on the held-out splits, and the pool's means
computed from the trained network (``donor_prior``, ``common_shift``)."""
from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import torch

from .common_shift import FILE as SHIFT_FILE
from .diffusion import Diffusion, in_edit_window
from .donor_prior import FILE as PRIOR_FILE
from .images import as_images
from .classifier import swap_success
from .evaluation import preset_loss_models
from .mapping import MappingNetwork
from .metrics import Unavailable
from .pool_means import save_beside
from .parameters import DEFAULTS, is_asymmetric
from .split_edits import edit_pairs, reconstruction_psnr
from .splits import Split
from .train import InversionCache, TrainConfig, train_mapping, training_order


def train_config(params: dict) -> TrainConfig:
    """The TrainConfig a preset's parameters (``presets.resolve``: every one present) describe."""
    return TrainConfig(arch=params["arch"], depth=params["depth"], fusion_depth=params["fusion_depth"],
                       t_edit=params["t_edit"], t_edit_max=params.get("t_edit_max"), n_steps=params["ddim_steps"],
                       lr=params["lr"], epochs=params["epochs"], max_batches=params["train_batches"],
                       batch_per_class=params["batch_per_class"], kl_temperature=params["kl_temperature"],
                       validate_every=params["validate_every"], common_adversary=params["common_adversary"],
                       common_adversary_head=params["common_adversary_head"], edit_form=params["edit_form"],
                       swap_cycle=params["swap_cycle"], removal_cycle=params["removal_cycle"],
                       edit_sparsity=params["edit_sparsity"], swap_identity=params["swap_identity"],
                       edit_sparsity_groups=params["edit_sparsity_groups"],
                       image_loss_every=params["image_loss_every"], asymmetric=is_asymmetric(params),
                       latent_warmup_steps=params["latent_warmup_steps"], latent_warmup_pool=params["latent_warmup_pool"],
                       latent_warmup_lr=params["latent_warmup_lr"], ema_decay=float(params["ema_decay"]),
                       lambdas=params["lambdas"] or {}, seed=params["seed"], kl_head=params["kl_head"],
                       background_salient=params["background_salient"], consistency_scale=params["consistency_scale"],
                       kl_pairing=params["kl_pairing"], classification_loss=params["classification_loss"],
                       image_term_weighting=params["image_term_weighting"])


def image_term_models(cfg: TrainConfig, device, params: dict | None = None,
                      models: dict | None = None) -> tuple[TrainConfig, object, object]:
    """The LPIPS and identity models the image terms need (``evaluation.loss_models``: the ID loss's
    toy identity encoder on toy presets, facenet-pytorch vggface2 on the others); a term whose
    weights are absent is switched off (λ = 0, recorded in the run's config) with one warning naming
    the file to place. ``models``: those networks, when already loaded (never the metrics')."""
    models = models or preset_loss_models(params or {"dataset_kind": "toy"}, device)
    lambdas, swap_id, found = dict(cfg.lambdas), cfg.swap_identity, {}
    for term, key in (("lpips", "lpips"), ("id", "id_embed")):
        model = models[key] if lambdas[term] > 0 or (term == "id" and swap_id > 0) else None
        if isinstance(model, Unavailable):
            warnings.warn(f"{term.upper()} loss term{' and swap identity' if term == 'id' and swap_id > 0 else ''} "
                          f"off: {model.reason}", stacklevel=1)
            lambdas[term], model = 0.0, None
            swap_id = 0.0 if term == "id" else swap_id
        found[term] = model
    return replace(cfg, lambdas=lambdas, swap_identity=swap_id), found["lpips"], found["id"]


def train_preset(diffusion: Diffusion, data: dict[str, Split], cfg: TrainConfig, out_dir: str | Path,
                 classifier, inversion_dir: Path | None = None, lpips=None, id_embed=None,
                 progress: bool = True, eval_batch_size: int = DEFAULTS["eval_batch_size"],
                 n_recon_per_class: int | None = None) -> MappingNetwork:
    """Train on ``train_*``; each validation measures swap success on ``val_*`` and reconstruction
    PSNR on its first ``n_recon_per_class`` images per class (None: all; the preset's
    ``n_val_recon_per_class``)."""
    cache = InversionCache(diffusion, cfg.n_steps, inversion_dir, eval_batch_size)
    for split in (data["val_bg"], data["val_tg"]):
        cache.register(split.keys, split.x)

    def validate(net: MappingNetwork) -> dict:
        val_bg, val_tg = data["val_bg"], data["val_tg"]
        added, removed = edit_pairs(diffusion, net, cache, val_bg, val_tg, cfg.n_steps, cfg.t_edit,
                                    asymmetric=cfg.asymmetric, t_edit_max=cfg.t_edit_max,
                                    residual=cfg.edit_form == "residual")
        return {**swap_success(classifier, val_bg.x, val_tg.x, added, removed),
                "psnr_rec": reconstruction_psnr(diffusion, net, cache, val_bg, val_tg, cfg.n_steps, cfg.t_edit,
                                                cfg.asymmetric, n_recon_per_class, cfg.t_edit_max)}

    return train_mapping(diffusion, data["train_bg"].x, data["train_tg"].x, data["train_bg"].keys,
                         data["train_tg"].keys, cfg, out_dir, validate=validate, id_embed=id_embed, lpips=lpips,
                         inversion_dir=inversion_dir, progress=progress, eval_batch_size=eval_batch_size,
                         validated_by=getattr(classifier, "record", None))


@torch.no_grad()
def pool_means(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, bg: Split, tg: Split,
               params: dict, is_target: bool) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Timestep → the mean C and timestep → the mean S, each (C, H, W), at every edited step of the preset's
    DDIM steps, over the latent warm-up's pool of training targets (``is_target``) or backgrounds:
    ``training_order``'s first epoch, ``latent_warmup_pool`` images, whose h trajectories the cache already holds
    (or generates once when the run had no warm-up)."""
    split = tg if is_target else bg
    n = min(len(split.keys), params["latent_warmup_pool"])
    order = training_order(len(bg.keys), len(tg.keys), cache.batch_size, params["seed"], 0)[int(is_target)]
    pool = order[:n].tolist()
    keys, x = [split.keys[i] for i in pool], as_images(split.x)
    timesteps = list(reversed(diffusion.timesteps(params["ddim_steps"])))  # the trajectories' order
    edited = [k for k, t in enumerate(timesteps) if in_edit_window(t, params["t_edit"], params.get("t_edit_max"))]
    sums = tuple({timesteps[k]: 0.0 for k in edited} for _ in range(2))  # C, S
    for i in range(0, n, cache.batch_size):
        h = cache.h_trajectories(keys[i:i + cache.batch_size], x.take(pool[i:i + cache.batch_size]))
        for k in edited:
            hk = h[:, k].to(diffusion.device, torch.float32)
            codes = net.split(hk, timesteps[k], torch.full((len(hk),), is_target, dtype=torch.bool, device=hk.device))
            for total, code in zip(sums, codes):
                total[timesteps[k]] = total[timesteps[k]] + code.sum(0).cpu()
    return tuple({t: v / n for t, v in total.items()} for total in sums)


def fit_donor_prior(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, train_bg: Split, train_tg: Split,
                    params: dict, checkpoint: Path) -> Path:
    """S̄_t, the pool's targets' mean S at every edited step, written as ``donor_prior.pt`` beside
    ``checkpoint`` (the network it was computed with)."""
    mean = pool_means(diffusion, net, cache, train_bg, train_tg, params, True)[1]
    return save_beside(checkpoint, PRIOR_FILE, mean, n_targets=min(len(train_tg.keys), params["latent_warmup_pool"]))


def fit_common_shift(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, train_bg: Split,
                     train_tg: Split, params: dict, checkpoint: Path) -> Path:
    """ΔC̄_t = C̄_bg,t − C̄_tg,t, the difference of the pool's backgrounds' and targets' mean C at every edited
    step, written as ``common_shift.pt`` beside ``checkpoint`` (the network it was computed with)."""
    bg, tg = (pool_means(diffusion, net, cache, train_bg, train_tg, params, is_target)[0]
              for is_target in (False, True))
    return save_beside(checkpoint, SHIFT_FILE, {t: bg[t] - tg[t] for t in bg})
