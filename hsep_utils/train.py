"""Training the mapping network (§4): per-timestep updates along the DDIM generative process.

For each batch (background and target images together) the DDIM inversion x0 → xT is computed
once and cached; then the generative process runs from xT with h̃ = f(C, S) for t ≥ t_edit (the
step of Eq. 4: ``TrainConfig.asymmetric``), and every timestep makes one optimiser step on the loss
terms of that step (the paper found per-step updates essential). x_t is detached between steps.
The U-Net is frozen: its encoder half runs under ``no_grad`` and gradients reach the mapping
network only through the decoder half, and only when an image term (ID, pixel, LPIPS) has a
non-zero λ. Optionally (beyond the paper, ``TrainConfig.latent_warmup_steps``) the latent terms
alone are trained first on stored h trajectories (``latent_warmup``).
"""
from __future__ import annotations

import functools
import json
import math
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from tqdm import tqdm  # text bars: ipywidgets ones keep only their first state in executed notebooks

from . import losses as L
from .diffusion import Diffusion, ddim_update, in_edit_window, predicted_x0
from .distributed import Ranks, ranks
from .edit import check_compatible
from .ema import ema_update
from .hspace import decode, encode
from .images import Images, as_images
from .io import save_dataframe, save_torch, write_text
from .mapping import MappingNetwork, edited_h
from .parameters import DEFAULTS, PARAMETERS


@dataclass
class TrainConfig:
    """One training run. The fields a study parameter sets take that parameter's default
    (``parameters.DEFAULTS``); the sizes a scale gives default here to the paper's training
    (no warm-up, no average, every batch)."""

    arch: str = DEFAULTS["arch"]
    depth: int = DEFAULTS["depth"]
    t_edit: int = DEFAULTS["t_edit"]  # training timesteps: 0 edits every step, 400 only the noisy part
    t_edit_max: int | None = DEFAULTS["t_edit_max"]  # and below it only (None: up to T); the steps above run unedited
    n_steps: int = 20  # DDIM steps of inversion and generation
    lr: float = DEFAULTS["lr"]
    epochs: int = DEFAULTS["epochs"]
    max_batches: int | None = None  # stop after this many batches in all (None: every epoch in full; 0: the warm-up only)
    validate_every: int = 0  # batches between validations (0: once per epoch)
    min_recon_psnr: float = 20.0  # a checkpoint competes on swap success only if validation reconstructions reach this
    batch_per_class: int = 8
    kl_bins: int = 16
    kl_temperature: float = DEFAULTS["kl_temperature"]
    time_input: bool = True
    common_adversary: float = DEFAULTS["common_adversary"]  # beyond the paper: gradient-reversal class adversary on C
    common_adversary_head: str = DEFAULTS["common_adversary_head"]  # pooled: on C's channel means; conv: on C's map
    swap_cycle: float = DEFAULTS["swap_cycle"]  # beyond the paper: the swapped h̃ re-encoded gives back the donor's S, its C
    removal_cycle: float = DEFAULTS["removal_cycle"]  # beyond the paper: a target's C is that of its own removal edit
    edit_sparsity: float = DEFAULTS["edit_sparsity"]  # beyond the paper: L1 on the change an edit (add, remove) makes to h
    edit_sparsity_groups: str = DEFAULTS["edit_sparsity_groups"]  # elements: L1 of the change; positions: group L1
    swap_identity: float = DEFAULTS["swap_identity"]  # beyond the paper: the adding swap keeps the background's identity
    fusion_depth: int = DEFAULTS["fusion_depth"]  # conv blocks of Fused(C, S) (1: the smallest reading of the paper's)
    edit_form: str = DEFAULTS["edit_form"]  # validation's edits: replace (the paper) or residual, h + f(C, S′) − f(C, S)
    image_loss_every: int = DEFAULTS["image_loss_every"]  # beyond the paper (faster): image terms on every k-th step only
    asymmetric: bool = DEFAULTS["reverse_process"] == "asymmetric"  # Eq. 4 as Asyrp: x_{t-1} from P_t(ε of h̃) + D_t(ε of h)
    latent_warmup_steps: int = 0  # beyond the paper (faster): latent-term updates on cached h first (``latent_warmup``)
    latent_warmup_pool: int = 1024  # images per class whose h trajectories the warm-up draws from
    latent_warmup_lr: float | None = DEFAULTS["latent_warmup_lr"]  # the warm-up's learning rate (None: lr)
    ema_decay: float = 0.0  # beyond the paper: validate, select and save an EMA of the weights (0: off, the raw weights)
    kl_head: str = DEFAULTS["kl_head"]  # learned: Eq. 8 through the network's 1×1 head; none: over pooled C's own channels
    background_salient: str = DEFAULTS["background_salient"]  # own: Eq. 7's Fused(C, S_bg); zero: Fig. 4's Fused(C, 0)
    consistency_scale: str = DEFAULTS["consistency_scale"]  # raw: h̃ vs h as they are; normalised: both / h_scale
    kl_pairing: str = DEFAULTS["kl_pairing"]  # batch: KL of the classes' batch means; pair: per pair (the paper's code)
    classification_loss: str = DEFAULTS["classification_loss"]  # mean: one BCE; halves_pos_weight_2: the paper's code
    image_term_weighting: str = DEFAULTS["image_term_weighting"]  # constant | cosine in the step (the paper's code)
    lambdas: dict = field(default_factory=dict)  # {term: weight}; a term left out weighs 1 (as the parameter lambdas)
    seed: int = DEFAULTS["seed"]

    def __post_init__(self) -> None:
        unknown = set(self.lambdas) - set(L.LOSS_TERMS)
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}; known: {', '.join(L.LOSS_TERMS)}")
        self.lambdas = {t: float(self.lambdas.get(t, 1.0)) for t in L.LOSS_TERMS}
        if int(self.image_loss_every) < 1:
            raise ValueError(f"image_loss_every must be ≥ 1, got {self.image_loss_every}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("common_adversary_head", "edit_form", "edit_sparsity_groups", "kl_head", "background_salient", "consistency_scale",
                     "kl_pairing", "classification_loss", "image_term_weighting"):
            if getattr(self, name) not in PARAMETERS[name].choices:
                raise ValueError(f"{name} must be one of {list(PARAMETERS[name].choices)}, got {getattr(self, name)!r}")
        if int(self.latent_warmup_steps) < 0 or int(self.latent_warmup_pool) < 1:
            raise ValueError(f"latent_warmup_steps must be ≥ 0 and latent_warmup_pool ≥ 1, got "
                             f"{self.latent_warmup_steps} and {self.latent_warmup_pool}")
        trains_nothing = self.max_batches == 0 and not self.latent_warmup_steps
        if self.max_batches is not None and (self.max_batches < 0 or trains_nothing):
            raise ValueError(f"max_batches must be ≥ 1, or 0 with a latent warm-up (it would train nothing), got "
                             f"{self.max_batches} with latent_warmup_steps {self.latent_warmup_steps}")
        if self.latent_warmup_lr is not None and not self.latent_warmup_lr > 0:
            raise ValueError(f"latent_warmup_lr must be > 0 (or None: lr), got {self.latent_warmup_lr}")

    def image_weight(self, i: int, n: int) -> float:
        """The image terms' weight at step ``i`` of a trajectory of ``n`` training steps (0: the
        noisiest), 0 where the step computes none. Every step has them by default; with
        ``image_loss_every`` = k every k-th, counted back from the last step (the one closest to x0)
        so that it always has them. Their weight is 1, or with ``image_term_weighting`` cosine
        cos((1 − i/(n − 1))·π/2), as the paper's code: 0 at the noisiest step, 1 at the last. A step
        without them runs the decoder half without graph: no backward through it, the U-Net's
        dominant cost."""
        if (n - 1 - i) % self.image_loss_every:
            return 0.0
        if self.image_term_weighting == "constant" or n == 1:
            return 1.0
        w = math.cos((1 - i / (n - 1)) * math.pi / 2)
        return 0.0 if w < 1e-12 else w


LEGACY_DEFAULTS = {"asymmetric": False}
"""Settings whose default changed: what a checkpoint that does not record them was trained with."""


def recipe(cfg: TrainConfig) -> dict:
    """``cfg`` as checkpoints and ``train_config.json`` record it (JSON values)."""
    return _jsonable(asdict(cfg))


def recorded_recipe(recorded: dict) -> dict:
    """A recorded recipe completed: a setting added after it was written takes the value that keeps the old
    behaviour, so it compares equal to ``recipe`` of the config it was trained with."""
    return {**recipe(TrainConfig()), **LEGACY_DEFAULTS, **recorded}


class InversionCache:
    """DDIM inversions xT keyed by (model, image key, n_steps), on disk when given a directory, and
    in memory: all of them without one, with one at most ``in_memory`` (the most recently used; a
    run over 20k images at 256 px would otherwise hold 16 GB).

    A CPU's kernels round differently with the batch an image is inverted in (up to ~2e-5), so a
    cache filled in another order would give other numbers. Images of a ``register``-ed split are
    therefore only ever inverted (and their h trajectories generated) in its canonical groups:
    ``batch_size`` consecutive images in the split's order, the whole group whenever one of them
    is missing. A cold cache, a warm one and one filled in any order then hold the same bytes.
    Unregistered keys are inverted ``batch_size`` at a time in the order asked."""

    def __init__(self, diffusion: Diffusion, n_steps: int, directory: Path | None = None, batch_size: int = 64,
                 in_memory: int = 256) -> None:
        self.diffusion, self.n_steps, self.dir, self.batch_size = diffusion, n_steps, directory, batch_size
        self.in_memory = in_memory
        self.mem: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.groups: dict[str, tuple[list[str], Images]] = {}

    def register(self, keys: list[str], x0: torch.Tensor | Images) -> None:
        """Make ``keys`` (a split's images ``x0``, in its order) invert only in canonical groups."""
        x0 = as_images(x0)
        for i in range(0, len(keys), self.batch_size):
            group = (list(keys[i:i + self.batch_size]), x0[i:i + self.batch_size])
            self.groups.update(dict.fromkeys(group[0], group))

    def _batches(self, keys: list[str], missing: list[int], x0) -> list[tuple[list[str], torch.Tensor]]:
        """What to compute for the ``missing`` positions of ``keys``: each registered key's whole
        group (once), then the unregistered ones ``batch_size`` at a time."""
        out, seen, loose = [], set(), [i for i in missing if keys[i] not in self.groups]
        for i in missing:
            if keys[i] in self.groups and id(group := self.groups[keys[i]]) not in seen:
                seen.add(id(group))
                out.append((group[0], group[1].load()))
        for part in range(0, len(loose), self.batch_size):
            idx = loose[part:part + self.batch_size]
            out.append(([keys[i] for i in idx], x0[idx]))
        return out

    def __call__(self, keys: list[str], x0: torch.Tensor | Images) -> torch.Tensor:
        """xT of ``keys``; ``x0`` (their images) is read only for those not cached."""
        found = {k: self.mem[k] for k in keys if k in self.mem}
        found |= {k: torch.load(self._path(k), weights_only=True) for k in keys
                  if k not in found and self.dir is not None and self._path(k).exists()}
        missing = [i for i, k in enumerate(keys) if k not in found]
        for batch_keys, x in self._batches(keys, missing, x0):
            for k, xT in zip(batch_keys, self.diffusion.invert(x, self.n_steps).cpu()):
                if k in found:  # a group member cached already: the same bytes
                    continue
                found[k] = xT
                if self.dir is not None:
                    save_torch(xT.clone(), self._path(k))
                elif k not in keys:  # without a folder, the group's other members stay in memory
                    self.mem[k] = xT
        for k in keys:
            self.mem[k] = found[k]
            self.mem.move_to_end(k)
        while self.dir is not None and len(self.mem) > self.in_memory:
            self.mem.popitem(last=False)  # on disk: read back when asked again
        return torch.stack([found[k] for k in keys]).to(self.diffusion.device)

    @torch.no_grad()
    def h_trajectories(self, keys: list[str], x0: torch.Tensor | Images, state_below: int | None = None) -> torch.Tensor:
        """h at every step of each image's unedited generation from its inversion (the trajectory a
        perfect h̃ = h would follow), in generation order (t descending): (N, n_steps, C, H, W),
        float16 on the CPU (h needs no more precision here). Kept on disk beside the inversions when
        the cache has a directory (one generation per image for every later run), not in memory.
        ``state_below``: the same generations also keep ``window_start(keys, x0, state_below)``."""
        def generate(batch_keys: list[str], x: torch.Tensor) -> torch.Tensor:
            _, traj = self.diffusion.generate(self(batch_keys, x), self.n_steps, return_trajectory=True)
            step = next((i for i, t in enumerate(traj.timesteps) if state_below is not None and t < state_below), None)
            if step is not None and self.dir is not None:
                for k, xt in zip(batch_keys, traj.xt[step].cpu()):
                    if not self._path(k, f"x{state_below}").exists():
                        save_torch(xt.clone(), self._path(k, f"x{state_below}"))
            return torch.stack(traj.h, 1).to("cpu", torch.float16)

        return self._per_image(keys, x0, "h", generate)

    @torch.no_grad()
    def window_start(self, keys: list[str], x0: torch.Tensor | Images, below: int) -> torch.Tensor:
        """Each image's state entering the first step with t < ``below`` (an edit window's top,
        ``t_edit_max``) of its unedited generation from its inversion. The steps above it are the same
        for every edit of the image, so they run once, in the canonical groups (the same bytes as
        running them inside each edit of a group). On disk beside the inversions when the cache has a
        directory; without one, generated at every call."""
        def generate(batch_keys: list[str], x: torch.Tensor) -> torch.Tensor:
            return self.diffusion.generate(self(batch_keys, x), self.n_steps, stop_below=below).cpu()

        return self._per_image(keys, x0, f"x{below}", generate).to(self.diffusion.device)

    def _per_image(self, keys: list[str], x0: torch.Tensor | Images, kind: str,
                   generate: Callable[[list[str], torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``kind``'s tensor of each of ``keys``: read from disk, or ``generate``-d for the missing
        ones' whole canonical groups (and saved there when the cache has a directory)."""
        found = {k: torch.load(self._path(k, kind), weights_only=True) for k in keys
                 if self.dir is not None and self._path(k, kind).exists()}
        missing = [i for i, k in enumerate(keys) if k not in found]
        for batch_keys, x in self._batches(keys, missing, x0):
            for k, value in zip(batch_keys, generate(batch_keys, x)):
                if k not in found:
                    found[k] = value
                    if self.dir is not None:
                        save_torch(value.clone(), self._path(k, kind))
        return torch.stack([found[k] for k in keys])

    def _path(self, key: str, kind: str = "") -> Path:
        """One file per image (and kind); a registered key's name says its group size, so files
        inverted in another grouping (or before groups) are not taken for it."""
        safe = key.replace("/", "__")
        group = f".g{self.batch_size}" if key in self.groups else ""
        return self.dir / f"{safe}.n{self.n_steps}{group}{'.' + kind if kind else ''}.pt"


def epoch_order(n: int, group: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch's order of ``n`` training images that walks the inversion cache's canonical groups
    (``group`` consecutive images, ``InversionCache.register``) one at a time: the groups in random
    order, each group's images in random order. A run that stops inside an epoch then inverts only
    the groups its batches reach, not every group a uniformly random batch touches (at 8 + 8 images
    a batch, the first one alone would invert ~16 of the default's 32 groups of 64). The split's order
    is already random (independent draws), so a group is a random sample of its class."""
    starts = torch.randperm(-(-n // group), generator=generator).tolist()
    return torch.cat([s * group + torch.randperm(min(group, n - s * group), generator=generator) for s in starts])


def training_order(n_bg: int, n_tg: int, group: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class's training order in ``epoch`` (``epoch_order``): the same on a resume, and for whoever
    needs to know which images a run drew (the latent warm-up's pool is the first epoch's first ones)."""
    g = torch.Generator().manual_seed(seed * 7919 + epoch)
    return epoch_order(n_bg, group, g), epoch_order(n_tg, group, g)


def latent_terms(net: MappingNetwork, h: torch.Tensor, t: int, is_target: torch.Tensor, cfg: TrainConfig,
                 r: Ranks = Ranks()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The latent terms (Eq. 6–10; optional: common-class adversary, swap and removal cycles, edit sparsity) of a batch of h at
    timestep t: they need h only, not the image. Returns (h̃, {term: tensor}). ``cfg.background_salient``
    zero recombines backgrounds with S = 0 (Fig. 4), so h̃ and the terms on it see what removal feeds;
    ``cfg.kl_head`` none takes the KL over pooled C's own channels, which no head can make alike;
    ``cfg.consistency_scale`` normalised compares h̃ and h on the network's scale, as the other terms."""
    h_tilde, c, s = net(h, t, is_target)
    bg, tg = ~is_target, is_target
    if cfg.background_salient == "zero":
        h_tilde = torch.where(bg.view(-1, 1, 1, 1), net.combine(c, torch.zeros_like(s)), h_tilde)
    scale = net.h_scale if cfg.consistency_scale == "normalised" else 1.0
    ht, hs = h_tilde / scale, h / scale
    kl_logits = net.kl_logits if cfg.kl_head == "learned" else (lambda code: code.mean((2, 3)))
    terms = {
        "silence": L.silence(s[bg]),
        "consistency": L.consistency(ht[bg], hs[bg]) + L.consistency(ht[tg], hs[tg]),
        "kl": L.bidirectional_kl(kl_logits(c[bg]), kl_logits(c[tg]), cfg.kl_temperature, r.batch_mean, cfg.kl_pairing),
        "orthogonal": L.orthogonal(c, s),
        "classification": L.classification(net.class_logit(c[bg]), net.class_logit(s[bg]),
                                           net.class_logit(c[tg]), net.class_logit(s[tg]), cfg.classification_loss),
    }
    if cfg.common_adversary > 0:
        terms["adversary"] = cfg.common_adversary * torch.nn.functional.binary_cross_entropy_with_logits(
            net.adversary_logit(c), is_target.to(c.dtype))
    residual = cfg.edit_form == "residual"
    if cfg.swap_cycle > 0:
        terms["swap_cycle"] = cfg.swap_cycle * swap_cycle(net, h, t, c, s, is_target, residual)
    if cfg.removal_cycle > 0:
        terms["removal_cycle"] = cfg.removal_cycle * removal_cycle(net, h, t, c, s, is_target, residual)
    if cfg.edit_sparsity > 0:
        terms["edit_sparsity"] = cfg.edit_sparsity * edit_sparsity(net, h, c, s, is_target, residual,
                                                                   cfg.edit_sparsity_groups)
    return h_tilde, terms


def _relative_mse(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """MSE relative to ``want``'s mean square: a code's error whatever the code's scale."""
    return (got - want).pow(2).mean() / want.pow(2).mean().clamp_min(1e-8)


def removal_cycle(net: MappingNetwork, h: torch.Tensor, t: int, c: torch.Tensor, s: torch.Tensor, is_target: torch.Tensor,
                  residual: bool) -> torch.Tensor:
    """Beyond the paper: each target's C must equal the C of its own removal edit (S = 0; ``residual``:
    h + f(C, 0) − f(C, S)), encoded again and held fixed (relative MSE). What a target shows only with
    its attribute — the beard's style — does not survive the removal, so C may no longer hold it and the
    fusion has to take it from S, which a swap then carries to another face; what both classes show
    survives and stays in C. 0 when the batch has no target."""
    tg = is_target.nonzero().squeeze(1)
    if len(tg) == 0:
        return h.new_zeros(())
    with torch.no_grad():
        removed = edited_h(net, h[tg], c[tg], s[tg], torch.zeros_like(s[tg]), residual)
        c_removed = net.common(removed, torch.as_tensor(t, device=h.device).expand(len(tg)))
    return _relative_mse(c[tg], c_removed)


def swap_pairs(is_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's adding swaps as the training terms imitate them: the i-th background with the i-th target,
    as many pairs as the smaller class has images (indices into the batch; empty when a class is absent)."""
    bg, tg = (~is_target).nonzero().squeeze(1), is_target.nonzero().squeeze(1)
    n = min(len(bg), len(tg))
    return bg[:n], tg[:n]


def sparsity_price(change: torch.Tensor, groups: str = "elements") -> torch.Tensor:
    """The price of a change of h (B, C, H, W): ``elements`` its mean absolute value (L1), ``positions`` the mean
    over positions of its norm across channels / √C (group L1, on the same scale as the L1 for a change of equal
    size everywhere), which costs a change spread over many positions more than one kept to a few."""
    if groups == "elements":
        return change.abs().mean()
    return change.pow(2).mean(1).add(1e-12).sqrt().mean()


def edit_sparsity(net: MappingNetwork, h: torch.Tensor, c: torch.Tensor, s: torch.Tensor, is_target: torch.Tensor,
                  residual: bool, groups: str = "elements") -> torch.Tensor:
    """Beyond the paper: the mean absolute change, on h's normalised scale, that the two edits make to h — the
    i-th background of the batch given the i-th target's S (adding, as the swap), each target given S = 0
    (removing; ``residual``: h + f(C, S′) − f(C, S)). The latent terms rebuild each image from its own codes and
    never ask a target's S to leave out the rest of its image (hair, skin, background), which a swap then carries
    to the background (docs/experiments.md, "the oracle on every attribute"); an L1 price on the change lets S
    keep only what reconstructing the targets needs from it, and the fusion use only that. ``groups``: what is
    priced (``sparsity_price``). Encoders and fusion both learn from it. 0 when the batch has no target."""
    tg = is_target.nonzero().squeeze(1)
    if len(tg) == 0:
        return h.new_zeros(())
    bg, paired = swap_pairs(is_target)
    added = edited_h(net, h[bg], c[bg], s[bg], s[paired], residual) - h[bg]
    removed = edited_h(net, h[tg], c[tg], s[tg], torch.zeros_like(s[tg]), residual) - h[tg]
    return sparsity_price(torch.cat([added, removed]), groups) / net.h_scale


def swap_identity(net: MappingNetwork, diffusion: Diffusion, enc, x: torch.Tensor, t: int, is_target: torch.Tensor,
                  residual: bool, id_embed: Callable, x_real: torch.Tensor,
                  id_real: torch.Tensor | None = None) -> torch.Tensor:
    """Beyond the paper: the ID loss (Eq. 11) on the adding swap — the i-th background of the batch given the
    i-th target's S (``residual``: h + f(C, S_t) − f(C, S)), its predicted x0 against that background. The
    paper's ID loss compares each image with its own reconstruction, which a target's S may help rebuild with
    the target's hair, skin and background; a swap then carries them to the background (docs/experiments.md,
    "the oracle on every attribute"). An identity encoder blind to the attribute (facenet; the toy one is
    trained to be) lets the attribute pass and prices the rest. ``enc``: the batch's ``hspace.Encoded`` at t;
    ``id_real``: ``id_embed(x_real)`` when computed once per batch. 0 when the batch lacks a class."""
    bg, tg = swap_pairs(is_target)
    if len(bg) == 0:
        return x.new_zeros(())
    c, s = net.split(enc.h, t, is_target)
    swapped = edited_h(net, enc.h[bg], c[bg], s[bg], s[tg], residual)
    eps = decode(diffusion.unet, enc.rows(bg), swapped)
    x0 = predicted_x0(x[bg], eps, diffusion.alpha(t, x[bg]))
    return L.identity(id_embed, x0, x_real[bg], None if id_real is None else id_real[bg])


def swap_cycle(net: MappingNetwork, h: torch.Tensor, t: int, c: torch.Tensor, s: torch.Tensor, is_target: torch.Tensor,
               residual: bool) -> torch.Tensor:
    """Beyond the paper (after MUNIT's latent reconstruction, Huang et al. 2018): the i-th background of the
    batch takes the i-th target's S as the adding swap does (``residual``: h + f(C, S_t) − f(C, S)), and the
    swapped h̃, encoded again, must give back that S and the background's own C (each MSE relative to the
    code's mean square, so the weight does not depend on the codes' scale). Only the fusion learns from it:
    the codes are held fixed and the encoders read the swapped h̃ without being trained by it, since
    encoders that may move would satisfy it by making S the same for both classes (measured: every edit
    then did nothing). It asks the fusion to write what S holds — the donor's beard style, which a
    target's C may also carry — into h̃ where the encoders find it. 0 when the batch lacks a class; no
    gradient for the archs without a fusion."""
    bg, tg = swap_pairs(is_target)
    n = len(bg)
    if n == 0:
        return h.new_zeros(())
    c_bg, s_bg, s_tg = c[bg].detach(), s[bg].detach(), s[tg].detach()
    swapped = edited_h(net, h[bg], c_bg, s_bg, s_tg, residual)
    encoders = [p for m in (net.shared, net.specific) for p in m.parameters() if p.requires_grad]
    for p in encoders:
        p.requires_grad_(False)
    try:
        c_again, s_again = net.split(swapped, t, torch.ones(n, dtype=torch.bool, device=h.device))
    finally:
        for p in encoders:
            p.requires_grad_(True)
    return _relative_mse(s_again, s_tg) + _relative_mse(c_again, c_bg)


def weighted_total(terms: dict[str, torch.Tensor], cfg: TrainConfig, image_weight: float = 1.0) -> torch.Tensor:
    """Σ λ·term (terms without a λ — the adversary, the cycles, the edit sparsity, the swap identity — carry their
    weight already); the image terms are also weighted by ``image_weight`` (``TrainConfig.image_weight``)."""
    return sum(cfg.lambdas.get(k, 1.0) * (image_weight if k in L.IMAGE_TERMS else 1.0) * v for k, v in terms.items())


def step_losses(net: MappingNetwork, diffusion: Diffusion, x: torch.Tensor, t: int, x_real: torch.Tensor,
                is_target: torch.Tensor, cfg: TrainConfig, id_embed: Callable | None = None, lpips=None,
                id_real: torch.Tensor | None = None, lpips_real: list[torch.Tensor] | None = None,
                r: Ranks = Ranks(), image_weight: float = 1.0):
    """All loss terms of one timestep. Returns (total, {term: tensor}, ε of h̃, ε of the original h)
    for the next x (``ddim_update``; the last is None unless ``cfg.asymmetric``).
    ``id_real`` / ``lpips_real``: the identity embedding / LPIPS features of ``x_real``, when
    computed once per batch; ``r``: the data-parallel ranks (the KL term's batch means are taken
    over all processes); ``image_weight``: the image terms' weight at this step, 0: latent terms
    only (``TrainConfig.image_weight``)."""
    lam = cfg.lambdas
    with torch.no_grad():
        enc = encode(diffusion.unet, x, t)
    h_tilde, terms = latent_terms(net, enc.h, t, is_target, cfg, r)
    image_terms = [k for k in L.IMAGE_TERMS if lam[k] > 0] if image_weight > 0 else []
    if image_terms:
        eps = decode(diffusion.unet, enc, h_tilde)
        x0_pred = predicted_x0(x, eps, diffusion.alpha(t, x))
        if lam["pixel"] > 0:
            terms["pixel"] = L.pixel(x0_pred, x_real)
        if lam["id"] > 0 and id_embed is not None:
            terms["id"] = L.identity(id_embed, x0_pred, x_real, id_real)
        if lam["lpips"] > 0 and lpips is not None:
            terms["lpips"] = L.lpips_loss(lpips, x0_pred, x_real, lpips_real)
        eps = eps.detach()
    if cfg.swap_identity > 0 and image_weight > 0 and id_embed is not None:
        terms["swap_identity"] = cfg.swap_identity * image_weight * swap_identity(
            net, diffusion, enc, x, t, is_target, cfg.edit_form == "residual", id_embed, x_real, id_real)
    if not image_terms:
        with torch.no_grad():
            eps = decode(diffusion.unet, enc, h_tilde.detach())
    eps_direction = None
    if cfg.asymmetric:
        with torch.no_grad():
            eps_direction = decode(diffusion.unet, enc)
    return weighted_total(terms, cfg, image_weight), terms, eps, eps_direction


def latent_warmup(net: MappingNetwork, opt: torch.optim.Optimizer, diffusion: Diffusion, cache: InversionCache,
                  x_bg: Images, x_tg: Images, keys_bg: list[str], keys_tg: list[str], cfg: TrainConfig,
                  update: Callable[[torch.Tensor, dict, str], dict], r: Ranks = Ranks(), progress: bool = True) -> list[dict]:
    """Beyond the paper (faster): ``cfg.latent_warmup_steps`` updates of the latent terms alone
    before the per-step training. Those terms need only h, so the h trajectories of the first
    ``cfg.latent_warmup_pool`` of ``x_bg`` and ``x_tg`` (``train_mapping`` passes them in the first epoch's
    order: the images its first batches reuse the inversions of) are generated once
    (``InversionCache.h_trajectories``, on disk beside the inversions) and each update draws
    ``batch_per_class`` + ``batch_per_class`` of them at one random training timestep (``in_edit_window``):
    no U-Net call per update. The encoders learn to reproduce h there first, the slowest part of
    training on a CPU budget (docs/experiments.md, "the thin-ring world"). ``update(total, terms, where)`` makes the
    optimiser step and returns the terms' values (``where``: the step, for errors). Returns one log
    row per update."""
    seq = list(reversed(diffusion.timesteps(cfg.n_steps)))
    usable = [k for k, t in enumerate(seq) if in_edit_window(t, cfg.t_edit, cfg.t_edit_max)]
    pools = []
    for x, keys in ((x_bg, keys_bg), (x_tg, keys_tg)):
        n = min(len(x), cfg.latent_warmup_pool)
        part = r.share(n)  # each process generates its part of the pool; all get all of it
        pools.append(r.gather(cache.h_trajectories(keys[:n][part], x[:n][part])))
    g = torch.Generator().manual_seed(cfg.seed)
    mine, dev, rows = r.share(cfg.batch_per_class), diffusion.device, []
    for group in opt.param_groups:  # the per-step training goes on at cfg.lr (set back below)
        group["lr"] = cfg.lr if cfg.latent_warmup_lr is None else cfg.latent_warmup_lr
    for step in tqdm(range(cfg.latent_warmup_steps), desc="latent warm-up", disable=not (progress and r.is_main),
                     mininterval=5):
        k = usable[int(torch.randint(len(usable), (1,), generator=g))]
        ib, it = (torch.randint(len(p), (cfg.batch_per_class,), generator=g)[mine] for p in pools)
        h = torch.cat([pools[0][ib, k], pools[1][it, k]]).to(dev, torch.float32)
        is_target = torch.arange(len(h), device=dev) >= len(ib)
        _, terms = latent_terms(net, h, seq[k], is_target, cfg, r)
        rows.append(dict(step=step, t=seq[k], **update(weighted_total(terms, cfg), terms,
                                                       f"latent warm-up step {step}, t={seq[k]}")))
    for group in opt.param_groups:
        group["lr"] = cfg.lr
    return rows


def estimate_h_scale(diffusion: Diffusion, xT: torch.Tensor, n_steps: int) -> float:
    """RMS of h over one generative pass of a batch: the mapping network works on h / h_scale."""
    _, traj = diffusion.generate(xT, n_steps, return_trajectory=True)
    return torch.stack(traj.h).pow(2).mean().sqrt().item()


def selection_key(metrics: dict, min_recon_psnr: float) -> list[float]:
    """How validations are ranked for ``best.pt`` (higher is better). Swap success is only worth
    something when the network still reconstructs its inputs: a network that wrecks every image
    "removes" and even "adds" attributes in a classifier's eyes. So checkpoints whose validation
    reconstruction PSNR (``psnr_rec``) reaches ``min_recon_psnr`` rank above all others, by the
    weaker direction's SR (``sr_min``; ``sr`` without it); the others rank by reconstruction PSNR."""
    sr = metrics.get("sr_min", metrics["sr"])
    sr = sr if sr == sr else -1.0  # NaN: nothing could be counted
    if "psnr_rec" not in metrics:
        return [1.0, sr]
    return [1.0, sr] if metrics["psnr_rec"] >= min_recon_psnr else [0.0, metrics["psnr_rec"]]


def train_mapping(diffusion: Diffusion, x_bg: torch.Tensor | Images, x_tg: torch.Tensor | Images, keys_bg: list[str],
                  keys_tg: list[str], cfg: TrainConfig, out_dir: str | Path,
                  validate: Callable[[MappingNetwork], dict] | None = None, id_embed: Callable | None = None,
                  lpips=None, inversion_dir: Path | None = None, checkpoint_every: int = 10,
                  progress: bool = True, eval_batch_size: int = DEFAULTS["eval_batch_size"],
                  validated_by: dict | None = None) -> MappingNetwork:
    """Train (or resume) a mapping network; writes ``last.pt``, ``best.pt``, ``train_log.csv`` and
    ``val_log.csv`` in ``out_dir``. ``validate(net)`` returns metrics with an ``sr`` key (and
    optionally ``sr_min``, ``psnr_rec``) that pick the best checkpoint (``selection_key``); without
    it the last one is also the best. ``eval_batch_size``: images per inversion and per generation
    of the warm-up's h trajectories. ``x_bg`` / ``x_tg`` are read a batch at a time (``images.Images``),
    and each class is inverted in its canonical groups (``InversionCache.register``). ``validated_by``:
    what ``validate`` judges with (the selection classifier's record), kept in ``last.pt``: a resume
    validated by another judge would rank its checkpoints on two scales, so it is refused."""
    x_bg, x_tg = as_images(x_bg), as_images(x_tg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev, r = diffusion.device, ranks()
    r.even_share(cfg.batch_per_class, "batch_per_class")  # fail before any work
    cache = InversionCache(diffusion, cfg.n_steps, None if inversion_dir is None else Path(inversion_dir), eval_batch_size)
    cache.register(keys_bg, x_bg)
    cache.register(keys_tg, x_tg)

    @functools.lru_cache(maxsize=1)
    def order(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``training_order`` of this run; made once an epoch, not once a batch."""
        return training_order(len(x_bg), len(x_tg), cache.batch_size, cfg.seed, epoch)

    seq = diffusion.timesteps(cfg.n_steps)
    steps = list(zip(reversed(seq), reversed([-1] + seq[:-1])))
    pairs = [(t, tn) for t, tn in steps if in_edit_window(t, cfg.t_edit, cfg.t_edit_max)]
    if not pairs:
        raise ValueError(f"no DDIM timestep of {cfg.n_steps} steps lies in the edit window t_edit {cfg.t_edit} <= t < "
                         f"t_edit_max {cfg.t_edit_max}: widen it")
    lead = [(t, tn) for t, tn in steps if t > pairs[0][0]]  # unedited steps before the first edited one
    n_batches = min(len(x_bg), len(x_tg)) // cfg.batch_per_class
    if n_batches == 0:
        raise ValueError(f"need at least batch_per_class={cfg.batch_per_class} images per class, "
                         f"got {len(x_bg)} background and {len(x_tg)} target")

    last = out / "last.pt"
    fresh = not last.exists()
    if not fresh:
        ck = torch.load(last, map_location="cpu", weights_only=True)
        recorded = recorded_recipe(ck["train_config"])
        if recorded != recipe(cfg):
            raise ValueError(f"{last} was trained with {recorded}, not {asdict(cfg)}: "
                             f"use another output folder or delete it")
        check_compatible(ck["net_config"], diffusion, f"{last} cannot resume here: use another output folder or delete it")
        if ck.get("validated_by") != _jsonable(validated_by):
            raise ValueError(f"{last} was validated by {ck.get('validated_by')}, not {validated_by} (the selection "
                             f"classifier changed): use another output folder or delete it")
        net = MappingNetwork(**ck["net_config"]).to(dev)
        net.load_state_dict(ck.get("train_net", ck["net"]))
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        opt.load_state_dict(ck["opt"])
        epoch, batch, rows, val_rows, best = ck["epoch"], ck["batch"], ck["rows"], ck["val_rows"], ck["best"]
        elapsed, updates = ck["elapsed"], ck.get("updates", 0)
    else:
        torch.manual_seed(cfg.seed)
        first_bg, first_tg = (o[:cfg.batch_per_class] for o in order(0))  # the first batch: no other group inverted
        xT0 = cache([keys_bg[i] for i in first_bg] + [keys_tg[i] for i in first_tg],
                    Images.concat([x_bg.take(first_bg), x_tg.take(first_tg)]))
        net = MappingNetwork(diffusion.unet.config.block_out_channels[-1], cfg.arch, cfg.depth, cfg.kl_bins,
                             cfg.time_input, estimate_h_scale(diffusion, xT0, cfg.n_steps),
                             cfg.common_adversary_head, cfg.fusion_depth).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        epoch, batch, rows, val_rows, best, elapsed, updates = 0, 0, [], [], [-math.inf], 0.0, 0
    # with ema_decay the averaged weights are the network: validated, selected, saved as "net", returned
    ema = None
    if cfg.ema_decay > 0:
        ema = MappingNetwork(**net.config()).to(dev).requires_grad_(False)
        ema.load_state_dict(ck["net"] if not fresh else net.state_dict())
        ema_params, params = list(ema.parameters()), list(net.parameters())
    evaluated = ema if ema is not None else net

    def save(path: Path, resumable: bool = True) -> None:
        """``last.pt`` holds everything a resume needs; ``best.pt`` only the network and its record.
        "net" is the evaluated network (the EMA when on; the trained weights are then "train_net").
        Only the main process writes."""
        if not r.is_main:
            return
        state = dict(net=evaluated.state_dict(), net_config=net.config(), epoch=epoch, batch=batch, best=best,
                     elapsed=time.time() - t0, train_config=recipe(cfg),
                     validated_by=_jsonable(validated_by))
        if resumable:
            state.update(opt=opt.state_dict(), rows=rows, val_rows=val_rows, updates=updates)
            if ema is not None:
                state["train_net"] = net.state_dict()
        save_torch(state, path)

    def update(total: torch.Tensor, terms: dict[str, torch.Tensor], where: str) -> dict:
        """One optimiser step (and EMA update); returns every term's value, averaged over processes
        (one host sync). ``where``: the step, for the error a non-finite loss raises."""
        nonlocal updates
        values = dict(zip(["total", *terms], r.mean(torch.stack([total.detach(), *terms.values()])).tolist()))
        if not math.isfinite(values["total"]):
            shown = {k: values[k] for k in terms}
            bad = [k for k, v in shown.items() if not math.isfinite(v)]
            kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
            raise FloatingPointError(f"non-finite loss term(s) {bad} at {where} (all terms: {shown}); {kept}")
        opt.zero_grad(set_to_none=True)
        total.backward()
        r.average_gradients(net.parameters())
        opt.step()
        if ema is not None:
            ema_update(ema_params, params, cfg.ema_decay, updates)
        updates += 1
        return values

    def record_validation() -> None:
        """Validate, log, and keep ``best.pt`` when this validation ranks highest."""
        nonlocal best
        evaluated.eval()  # edits in eval mode, as every loaded checkpoint's; training goes on in train mode
        metrics = validate(evaluated) if validate is not None else {"sr": float(done())}
        net.train()
        val_rows.append(dict(epoch=epoch, batch=batch, batches=done(), minutes=(time.time() - t0) / 60, **metrics))
        key = selection_key(metrics, cfg.min_recon_psnr)
        if key > best:  # the first validation always saves (best starts at [-inf])
            best = key
            save(out / "best.pt", resumable=False)

    t0 = time.time() - elapsed
    total_batches = cfg.epochs * n_batches if cfg.max_batches is None else min(cfg.epochs * n_batches, cfg.max_batches)
    done = lambda: epoch * n_batches + batch  # noqa: E731
    start = done()
    if fresh and cfg.latent_warmup_steps > 0:  # an interrupted warm-up starts again: no checkpoint inside it
        net.train()
        pool_bg, pool_tg = (o[:cfg.latent_warmup_pool] for o in order(0))
        warm = latent_warmup(net, opt, diffusion, cache, x_bg.take(pool_bg), x_tg.take(pool_tg),
                             [keys_bg[i] for i in pool_bg], [keys_tg[i] for i in pool_tg], cfg, update, r, progress)
        record_validation()
        save(last)
        if r.is_main:
            save_dataframe(pd.DataFrame(warm), out / "warmup_log.csv")
            save_dataframe(pd.DataFrame(val_rows), out / "val_log.csv")
    bar = tqdm(total=total_batches, initial=done(), desc="train mapping network", disable=not (progress and r.is_main),
               mininterval=5)
    while done() < total_batches:
        perm_bg, perm_tg = order(epoch)
        sl = slice(batch * cfg.batch_per_class, (batch + 1) * cfg.batch_per_class)
        ib, it = perm_bg[sl][r.share(cfg.batch_per_class)], perm_tg[sl][r.share(cfg.batch_per_class)]
        x_real = torch.cat([x_bg[ib], x_tg[it]]).to(dev)
        is_target = torch.arange(len(x_real), device=dev) >= len(ib)
        x = cache([keys_bg[i] for i in ib] + [keys_tg[i] for i in it], x_real)
        net.train()
        id_real = lpips_real = None  # the real images' embeddings: once per batch, not per timestep
        with torch.no_grad():
            if id_embed is not None and (cfg.lambdas["id"] > 0 or cfg.swap_identity > 0):
                id_real = id_embed(x_real)
            if lpips is not None and cfg.lambdas["lpips"] > 0:
                lpips_real = L.lpips_features(lpips, x_real)
            for t, t_next in lead:  # the noisiest steps, outside the edit window, with the original h
                x = ddim_update(x, diffusion.eps(x, t)[0], diffusion.alpha(t, x), diffusion.alpha(t_next, x))[0]
        for i, (t, t_next) in enumerate(pairs):
            total, terms, eps, eps_dir = step_losses(net, diffusion, x, t, x_real, is_target, cfg, id_embed, lpips,
                                                     id_real, lpips_real, r, cfg.image_weight(i, len(pairs)))
            values = update(total, terms, f"epoch {epoch}, batch {batch}, t={t}")
            x = ddim_update(x, eps, diffusion.alpha(t, x), diffusion.alpha(t_next, x), eps_direction=eps_dir)[0].detach()
            rows.append(dict(epoch=epoch, batch=batch, t=t, **values))
        batch += 1
        bar.update(1)
        bar.set_postfix(loss=f"{rows[-1]['total']:.4f}", refresh=False)
        end_of_epoch, finished = batch == n_batches, done() == total_batches
        if (cfg.validate_every and batch % cfg.validate_every == 0) or end_of_epoch or finished:
            record_validation()
        if end_of_epoch:
            epoch, batch = epoch + 1, 0
        if (end_of_epoch or finished or batch % checkpoint_every == 0) and r.is_main:
            save(last)
            save_dataframe(pd.DataFrame(rows), out / "train_log.csv")
            save_dataframe(pd.DataFrame(val_rows), out / "val_log.csv")
    bar.close()
    config_json = out / "train_config.json"
    if r.is_main and (done() > start or not config_json.exists()):  # a finished run read back changes no file
        write_text(config_json, json.dumps(dict(train=recipe(cfg), net=net.config(),
                                                minutes=(time.time() - t0) / 60), indent=2))
    r.barrier()  # other processes read these files next
    return evaluated.eval()


def load_mapping(path: str | Path, device="cpu") -> MappingNetwork:
    """A trained mapping network from ``best.pt`` / ``last.pt``."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    net = MappingNetwork(**ck["net_config"])
    net.load_state_dict(ck["net"])
    return net.to(device).eval()


def checkpoint_origin(path: str | Path) -> str | None:
    """Which training a checkpoint holds, in words: ``best.pt`` is whichever validation ranked highest, so
    it may be the latent warm-up's network with none of the paper's per-step batches in it. None when
    the checkpoint or its ``val_log.csv`` is missing."""
    path = Path(path)
    log = path.parent / "val_log.csv"
    if not (path.exists() and log.exists()):
        return None
    ck = torch.load(path, map_location="cpu", weights_only=True)
    val = pd.read_csv(log)
    row = val[(val["epoch"] == ck["epoch"]) & (val["batch"] == ck["batch"])]
    if row.empty:
        return None
    batches = int(row["batches"].iloc[0])
    later = sorted(int(b) for b in val["batches"] if b > batches)
    warmed = (path.parent / "warmup_log.csv").exists()
    if batches:
        kept = f"the network after {batches} per-step batches" + (" (after the latent warm-up)" if warmed else "")
    elif ck.get("train_config", {}).get("max_batches") == 0:
        kept = "the latent warm-up's network (the recipe runs no per-step batch)"
    else:
        kept = "the latent warm-up's network (validated before any per-step batch)"
    if later:
        kept += f"; the validation{'s' if len(later) > 1 else ''} after {', '.join(map(str, later))} per-step batches " \
                "ranked no higher"
    return kept


def _jsonable(obj):
    return json.loads(json.dumps(obj))
