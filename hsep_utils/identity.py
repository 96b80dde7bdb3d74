"""The toy identity encoder: f_id of the ID metric and the ID loss on toy presets.

Real presets measure identity with facenet's VGGFace2 network; no such network knows the toy
world, so we train a small one. Toy identities from a seed no preset or base model uses are each
rendered several times with the four binary attributes drawn at random, and a CNN learns to
classify the identity with a normalised (cosine, CosFace-margin) softmax: its L2-normalised
embedding is then invariant to glasses, smile, age and gender and sensitive to everything else
(face shape, colours, hair style, background…). Verification on held-out identities (each
compared with its own single-attribute flips and with other identities) goes into
``training.json``. ``DEFAULTS`` is the whole configuration and becomes the CLI:

    python -m hsep_utils.identity [--epochs 10 ...]     # writes models/toy-identity/{encoder.safetensors,training.json}

Seeded throughout: on CPU with the same thread count the same config gives the same weights.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .io import atomic_path, write_text
from .metrics import Unavailable
from .options import parse_options, resolve_options
from .plotting import from_uint8
from .toy import ATTRIBUTES, SUB_FACTORS, render, sample_factors

DEFAULTS = dict(
    out="models/toy-identity",
    seed=0,
    data_seed=2_000_000,  # presets use seed 0, the base DDPM 1_000_000: these identities are unseen by both
    n_identities=800,  # training identities 0 … n−1 of data_seed
    views_per_identity=8,  # renders per training identity, attributes drawn at random
    n_val_identities=200,  # held-out identities n … n+n_val−1, each with its 4 single-attribute flips
    size=32,
    width=32,
    dim=64,
    scale=16.0,  # cosine-softmax temperature s
    margin=0.2,  # CosFace margin m: logits s·(cos θ − m·[true class])
    noise_std=0.05,  # per-image Gaussian noise of std U(0, noise_std), so edited (imperfect) images still embed well
    epochs=10,
    batch_size=128,
    lr=5e-3,
    num_threads=1,  # as the committed weights were made: bit-identical reruns need the same count; 0 = torch default
)
DEFAULT_FILE = "encoder.safetensors"


class IdentityEncoder(nn.Module):
    """SmallCNN-style conv stack, global mean pool (any input size), linear projection, L2 norm."""

    def __init__(self, width: int = 32, dim: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1), nn.SiLU(),
            nn.Conv2d(width, width, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.SiLU(),
        )
        self.proj = nn.Linear(4 * width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.features(x).mean((2, 3))), dim=1)


def training_views(data_seed: int, n_identities: int, views: int, size: int, seed: int,
                   progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Each identity rendered ``views`` times with random attributes and salient sub-factors (the
    embedding must not tell a glasses style or a beard style apart either): images (N·views, 3, size,
    size) in [-1, 1] and identity labels 0 … n−1."""
    rng = np.random.default_rng([seed, data_seed])
    attrs = rng.integers(0, 2, (n_identities, views, len(ATTRIBUTES)))
    subs = rng.integers(0, 3, (n_identities, views, len(SUB_FACTORS)))
    imgs = [render(replace(sample_factors(data_seed, i, **dict(zip(ATTRIBUTES, map(int, attrs[i, v])))),
                           **dict(zip(SUB_FACTORS, map(int, subs[i, v])))), size)
            for i in tqdm(range(n_identities), desc="render identity views", disable=not progress, mininterval=5)
            for v in range(views)]
    return from_uint8(np.stack(imgs)), torch.arange(n_identities).repeat_interleave(views)


def verification_views(data_seed: int, first: int, n: int, size: int) -> torch.Tensor:
    """Held-out identities first … first+n−1, each as (random attributes, then each attribute flipped
    in turn): shape (n, 1 + len(ATTRIBUTES), 3, size, size)."""
    out = []
    for i in range(first, first + n):
        f = sample_factors(data_seed, i)
        out.append(np.stack([render(f, size)] + [render(f.flipped(a), size) for a in ATTRIBUTES]))
    return from_uint8(np.concatenate(out)).view(n, 1 + len(ATTRIBUTES), 3, size, size)


def verification(embed: Callable[[torch.Tensor], torch.Tensor], views: torch.Tensor) -> dict:
    """Same identity with one attribute flipped vs a different identity (the next one, same flip):
    mean cosines and the pair accuracy at the best threshold."""
    n, k = views.shape[:2]
    with torch.no_grad():
        e = embed(views.flatten(0, 1)).view(n, k, -1)
    same = (e[:, :1] * e[:, 1:]).sum(-1)  # (n, 4): base vs its flips
    diff = (e[:, :1] * e.roll(-1, 0)[:, 1:]).sum(-1)  # base vs the next identity's flips
    scores = torch.cat([same.flatten(), diff.flatten()]).numpy()
    labels = np.r_[np.ones(same.numel(), bool), np.zeros(diff.numel(), bool)]
    order = np.argsort(-scores)
    # threshold just below the j-th highest score: accept the j best; count right answers for each j
    right = np.r_[0, np.cumsum(labels[order])] + np.r_[labels.size - labels.sum(), labels.size - labels.sum()
                                                         - np.cumsum(~labels[order])]
    best = int(np.argmax(right))
    threshold = float(scores[order[best - 1]]) if best > 0 else float(scores.max()) + 1e-6
    return dict(n_identities=n,
                cosine_same_identity=round(same.mean().item(), 4),
                cosine_same_identity_by_flipped_attribute={a: round(v, 4) for a, v in
                                                           zip(ATTRIBUTES, same.mean(0).tolist())},
                cosine_different_identity=round(diff.mean().item(), 4),
                verification_accuracy=round(float(right[best]) / labels.size, 4),
                threshold=round(threshold, 4))


def train(progress: bool = True, **overrides) -> Path:
    """Train the encoder; write ``<out>/encoder.safetensors`` and ``<out>/training.json``; return the weights file."""
    cfg = resolve_options(DEFAULTS, overrides)
    t0 = time.time()
    x, y = training_views(cfg["data_seed"], cfg["n_identities"], cfg["views_per_identity"], cfg["size"], cfg["seed"],
                          progress)
    torch.manual_seed(cfg["seed"])
    model = IdentityEncoder(cfg["width"], cfg["dim"])
    classes = nn.Parameter(torch.randn(cfg["n_identities"], cfg["dim"]))
    opt = torch.optim.Adam([*model.parameters(), classes], lr=cfg["lr"])
    n_batches = -(-len(x) // cfg["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg["lr"], total_steps=cfg["epochs"] * n_batches)
    g = torch.Generator().manual_seed(cfg["seed"])
    log = []
    model.train()
    for epoch in tqdm(range(cfg["epochs"]), desc="train identity encoder", disable=not progress):
        loss_sum, right = 0.0, 0
        for idx in torch.randperm(len(x), generator=g).split(cfg["batch_size"]):
            xb, yb = x[idx], y[idx]
            sigma = cfg["noise_std"] * torch.rand(len(idx), 1, 1, 1, generator=g)
            xb = xb + sigma * torch.randn(xb.shape, generator=g)
            cos = model(xb) @ F.normalize(classes, dim=1).T
            loss = F.cross_entropy(cfg["scale"] * (cos - cfg["margin"] * F.one_hot(yb, cfg["n_identities"])), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            right += int((cos.argmax(1) == yb).sum())
        log.append(dict(epoch=epoch + 1, loss=round(loss_sum / len(x), 4), train_accuracy=round(right / len(x), 4)))
    model.eval().requires_grad_(False)
    train_time = time.time() - t0

    out = Path(cfg["out"])
    file = out / DEFAULT_FILE
    save_encoder(model, file, dict(width=cfg["width"], dim=cfg["dim"], size=cfg["size"]))
    val = verification(model, verification_views(cfg["data_seed"], cfg["n_identities"], cfg["n_val_identities"],
                                                 cfg["size"]))
    write_text(out / "training.json", json.dumps(dict(
        config=cfg, wall_time_s=round(train_time, 1), torch=torch.__version__, threads=torch.get_num_threads(),
        epochs=log, held_out_verification=val), indent=2))
    return file


def save_encoder(model: IdentityEncoder, path: str | Path, arch: dict) -> None:
    """safetensors with the architecture in its metadata, written atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={k: str(v) for k, v in arch.items()})


JUDGE_OPTIONS = dict(out="models/toy-identity-judge", seed=1, data_seed=3_000_000, width=48)
"""The second toy identity encoder, the ID metric's: other identities, seed and width than the loss's,
so an edit trained against the loss's encoder is not scored by it
(``python -m hsep_utils.identity --out models/toy-identity-judge --seed 1 --data-seed 3000000 --width 48``)."""


def default_encoder_file(judge: bool = False) -> Path:
    """The committed weights: ``models/toy-identity/encoder.safetensors`` (the ID loss's) or, with
    ``judge``, ``models/toy-identity-judge/encoder.safetensors`` (the ID metric's)."""
    from .presets import repo_path

    return repo_path(JUDGE_OPTIONS["out"] if judge else DEFAULTS["out"]) / DEFAULT_FILE


def toy_identity_embedder(device: str | torch.device = "cpu", path: str | Path | None = None, judge: bool = False
                          ) -> Callable[[torch.Tensor], torch.Tensor] | Unavailable:
    """f_id for toy presets: images in [-1, 1] (any size; resized to the training size) → unit
    embeddings. Frozen, but gradients reach the input, as the ID loss needs. ``Unavailable`` naming
    the file and the command that creates it when the weights are missing."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    file = default_encoder_file(judge) if path is None else Path(path).expanduser()
    if file.is_dir() or file.suffix != ".safetensors":  # a folder, existing or not
        file = file / DEFAULT_FILE
    if not file.is_file():
        options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in JUDGE_OPTIONS.items() if k != "out") if judge else ""
        return Unavailable(f"ID (toy identity encoder{', the metric' if judge else ''}) needs {file}: create it with "
                           f"`python -m hsep_utils.identity --out {file.parent}{' ' + options if options else ''}` "
                           f"(about 2 minutes on a CPU)")
    with safe_open(str(file), "pt") as f:
        arch = {k: int(v) for k, v in f.metadata().items()}
    net = IdentityEncoder(arch["width"], arch["dim"])
    net.load_state_dict(load_file(str(file)))
    net = net.eval().requires_grad_(False).to(device)
    size = arch["size"]

    def embed(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)  # metrics pass edited images back on the CPU
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return net(x)

    return embed


def main(argv=None) -> None:
    file = train(**parse_options(DEFAULTS, __doc__, argv))
    print(file)
    print((file.parent / "training.json").read_text())


if __name__ == "__main__":
    main()
