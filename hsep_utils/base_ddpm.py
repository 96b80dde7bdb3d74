"""Train the small base DDPM of the embedded default on the toy world.

The paper edits with a frozen, pretrained face DDPM. Offline and on a CPU we cannot download one,
so we train our own on the union of toy images (every attribute varying) and commit its EMA
weights. ``DEFAULTS`` is the whole configuration and becomes the CLI (``python -m
hsep_utils.base_ddpm --help``). Training resumes from ``<out>/checkpoint.pt``; every random draw
of step k comes from a generator seeded by (seed, k), so a resumed run is identical to an
uninterrupted one.
"""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .ema import ema_update
from .hspace import decode, encode
from .io import atomic_path, save_torch, write_text
from .options import parse_options, resolve_options
from .plotting import from_uint8
from .toy import RENDERER_VERSION, render_batch

DEFAULTS = dict(
    out="models/toy-ddpm-32",
    init_from="",  # an exported model directory (with unet/) to fine-tune instead of starting from random weights
    seed=0,
    data_seed=1_000_000,  # toy identities used for the base model; presets draw from other seeds
    n_images=20_000,
    size=32,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    attention_levels=(2,),  # which resolution levels get self-attention (the mid block always has it)
    norm_num_groups=8,
    cut_skip_levels=(-1,),  # resolution levels (0: full size, 1: half, ..., -1: the deepest, h's) whose skips the decoder never sees (cut_skips)
    skip_dropout=0.0,  # probability that a training image's skip connections are zeroed (see train())
    batch_size=64,
    lr=1e-3,
    warmup_steps=200,
    weight_decay=0.0,
    ema_decay=0.999,
    steps=6000,
    checkpoint_every=250,
    n_samples=64,  # DDIM samples drawn into samples.png at the end
    num_threads=0,  # 0: torch default
    device="cpu",  # cpu | cuda; random draws are made on the CPU either way
)

CUT_SKIPS_T_EDIT_MAX = 600
"""The edit window (``t_edit_max``) a model trained with ``cut_skip_levels`` needs: swapped at the
noisiest steps, its h repaints the whole image (docs/experiments.md "the noisiest steps"). The toy
presets set it; ``data_prep.folders`` writes it into the preset of a base model it trains."""


def build_unet(size: int, block_out_channels, layers_per_block: int, attention_levels, norm_num_groups: int):
    """The one way to build a base U-Net from config."""
    from diffusers import UNet2DModel

    n = len(block_out_channels)
    down = tuple("AttnDownBlock2D" if i in attention_levels else "DownBlock2D" for i in range(n))
    up = tuple("AttnUpBlock2D" if (n - 1 - i) in attention_levels else "UpBlock2D" for i in range(n))
    return UNet2DModel(sample_size=size, in_channels=3, out_channels=3, block_out_channels=tuple(block_out_channels),
                       layers_per_block=layers_per_block, down_block_types=down, up_block_types=up,
                       norm_num_groups=norm_num_groups)


def build_scheduler():
    """The noise schedule of the paper's DDPMs: linear betas 1e-4 → 0.02 over 1000 steps."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                         clip_sample=False)


def toy_pool(data_seed: int, n_images: int, size: int, cache_dir: Path | None = None) -> torch.Tensor:
    """The training images in [-1, 1], shape (N, 3, size, size); cached as .npy when asked (named by
    the renderer's version, so a cache of another world is never read)."""
    name = f"toy_pool_r{RENDERER_VERSION}_seed{data_seed}_n{n_images}_{size}px.npy"
    cache = cache_dir / name if cache_dir else None
    if cache is not None and cache.exists():
        arr = np.load(cache)
    else:
        arr = render_batch(data_seed, tqdm(range(n_images), desc="render toy pool", mininterval=5), size)
        if cache is not None:
            with atomic_path(cache) as tmp:
                np.save(tmp, arr)
    return from_uint8(arr)


def _lr_at(step: int, cfg: dict) -> float:
    """Linear warm-up then cosine decay to 10 % of the peak."""
    if step < cfg["warmup_steps"]:
        return cfg["lr"] * (step + 1) / cfg["warmup_steps"]
    p = (step - cfg["warmup_steps"]) / max(1, cfg["steps"] - cfg["warmup_steps"])
    return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def _exported_weights(model_dir: Path, unet) -> dict:
    """The weights of an exported base model (``<model_dir>/unet``), checked against ``unet``'s architecture."""
    from .diffusion import load_diffusion

    if not (model_dir / "unet").is_dir():
        raise FileNotFoundError(f"--init-from {model_dir}: no exported model there (expected {model_dir / 'unet'}, "
                                f"as written at the end of a base-model training)")
    state = load_diffusion(model_dir).unet.state_dict()
    mine = unet.state_dict()
    if state.keys() != mine.keys() or any(state[k].shape != mine[k].shape for k in mine):
        raise ValueError(f"--init-from {model_dir}: its U-Net has another architecture than this run's "
                         f"(block_out_channels / layers_per_block / attention_levels / norm_num_groups must match)")
    return state


def cut_skips(unet, levels) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """Blind the decoder to the skip connections of resolution ``levels``: the up blocks' resnets get
    zero weights (norm, conv1, shortcut) on those skips' channels, so whatever passes from the encoder
    at those scales must pass through h. The model stays a plain ``UNet2DModel`` that every loader
    runs unchanged. Returns (parameter, mask) pairs: gradients multiplied by the mask keep the cut
    weights zero in training. (Where a GroupNorm group mixes skip and decoder channels, the skip
    still shifts that group's statistics.)"""
    if not levels:
        return []
    deepest = len(unet.config.block_out_channels)
    levels = {level + deepest if level < 0 else level for level in levels}  # -1: the deepest level, h's
    size = unet.config.sample_size
    with torch.no_grad():
        skips = encode(unet, torch.zeros(1, unet.config.in_channels, size, size), 0).skips
    pairs, seen = [], set()
    for block in unet.up_blocks:
        n = len(block.resnets)
        res, skips = skips[-n:], skips[:-n]
        for resnet, skip in zip(block.resnets, reversed(res)):
            level = round(math.log2(size / skip.shape[-1]))
            seen.add(level)
            if level not in levels:
                continue
            cx = resnet.conv1.in_channels - skip.shape[1]
            if resnet.conv_shortcut is None:
                raise ValueError("cut_skips: an up-block resnet without a shortcut convolution adds its skip unchanged")
            for param, dim in ((resnet.norm1.weight, 0), (resnet.norm1.bias, 0), (resnet.conv1.weight, 1),
                               (resnet.conv_shortcut.weight, 1)):
                mask = torch.ones_like(param)
                mask.narrow(dim, cx, param.shape[dim] - cx).zero_()
                with torch.no_grad():
                    param.mul_(mask)
                pairs.append((param, mask))
    if set(levels) - seen:
        raise ValueError(f"cut_skip_levels {tuple(levels)}: this U-Net has skip connections at levels {sorted(seen)} only")
    return pairs


def predict_noise(unet, xt: torch.Tensor, t: torch.Tensor, keep_skips: torch.Tensor | None = None) -> torch.Tensor:
    """The U-Net's noise prediction; images whose ``keep_skips`` is False get zero skip connections,
    so their prediction comes from h alone."""
    if keep_skips is None:
        return unet(xt, t).sample
    enc = encode(unet, xt, t)
    keep = keep_skips.to(xt.dtype).view(-1, 1, 1, 1)
    enc.skips = tuple(s * keep for s in enc.skips)
    return decode(unet, enc)


def train(data: torch.Tensor | None = None, **overrides) -> Path:
    """Train (or resume) the base DDPM; returns the directory of the final EMA model. ``data``
    (N, 3, size, size) in [-1, 1] replaces the toy pool: a new domain (``data_prep.folders``).

    ``skip_dropout`` > 0 zeroes all skip connections of that fraction of training images. A small
    U-Net otherwise routes nearly everything through its skips, leaving its bottleneck (h-space)
    with little say over the output: replacing h by a counterfactual's h barely changed our first
    toy model's images. Trained to denoise from h alone part of the time, the decoder takes the
    image's content from h, as large face DDPMs do. Sampling always uses the full U-Net."""
    cfg = resolve_options(DEFAULTS, overrides)
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / "checkpoint.pt", out / "loss_log.csv"

    arch = dict(size=cfg["size"], block_out_channels=cfg["block_out_channels"],
                layers_per_block=cfg["layers_per_block"], attention_levels=cfg["attention_levels"],
                norm_num_groups=cfg["norm_num_groups"])
    dev = torch.device(cfg["device"])
    torch.manual_seed(cfg["seed"])
    unet = build_unet(**arch)
    if cfg["init_from"]:
        unet.load_state_dict(_exported_weights(Path(cfg["init_from"]), unet))
    ema = build_unet(**arch)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    sched = build_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    step, elapsed = 0, 0.0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if _jsonable(ck["arch"]) != _jsonable(arch):
            raise ValueError(f"{ckpt_path} was made with architecture {ck['arch']}, not {arch}: "
                             f"use another --out or delete the checkpoint")
        unet.load_state_dict(ck["unet"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed"]
        print(f"resumed from {ckpt_path} at step {step}")
    for param, mask in cut_skips(unet, cfg["cut_skip_levels"]):  # after any loading: the cut holds on resume too
        param.register_hook(lambda g, m=mask: g * m.to(g.device))
    cut_skips(ema, cfg["cut_skip_levels"])
    unet.to(dev), ema.to(dev)
    for state in opt.state.values():  # a resumed optimiser's moments follow the model to the device
        for k, v in state.items():
            if torch.is_tensor(v) and k != "step":
                state[k] = v.to(dev)

    if data is None:
        data = toy_pool(cfg["data_seed"], cfg["n_images"], cfg["size"], cache_dir=out / "cache")
    data = data.to(dev)
    alphas = sched.alphas_cumprod.to(dev)
    ema_params, params = list(ema.parameters()), list(unet.parameters())
    rows = _read_log(log_path, upto=step)
    saved = step  # the step of the checkpoint on disk (0: none)
    unet.train()
    bar = tqdm(total=cfg["steps"], initial=step, desc="train base DDPM", mininterval=10)
    t0 = time.time() - elapsed
    while step < cfg["steps"]:
        g = torch.Generator().manual_seed(cfg["seed"] * 1_000_003 + step)
        idx = torch.randint(0, len(data), (cfg["batch_size"],), generator=g)
        t = torch.randint(0, 1000, (len(idx),), generator=g)
        noise = torch.randn((len(idx), *data.shape[1:]), generator=g)
        keep = torch.rand(len(idx), generator=g) >= cfg["skip_dropout"] if cfg["skip_dropout"] > 0 else None
        idx, t, noise = idx.to(dev), t.to(dev), noise.to(dev)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * data[idx] + (1 - a).sqrt() * noise
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        loss = F.mse_loss(predict_noise(unet, xt, t, None if keep is None else keep.to(dev)), noise)
        if not torch.isfinite(loss):
            kept = f"{ckpt_path} (step {saved}) is kept" if saved else "no checkpoint was written yet"
            raise FloatingPointError(f"non-finite loss {loss.item()} (noise MSE) at step {step + 1}: stopped before "
                                     f"the optimiser step; {kept}. Lower lr (now {_lr_at(step, cfg):g}) or check the "
                                     f"training images for NaN/inf, then run again: it resumes from the checkpoint")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema_update(ema_params, params, cfg["ema_decay"], step)
        step += 1
        rows.append((step, loss.item(), _lr_at(step - 1, cfg)))
        bar.update(1)
        bar.set_postfix(loss=f"{rows[-1][1]:.4f}", refresh=False)
        if step % cfg["checkpoint_every"] == 0 or step == cfg["steps"]:
            save_torch(dict(unet=unet.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(), step=step,
                            elapsed=time.time() - t0, arch=arch, config=_jsonable(cfg)), ckpt_path)
            _write_log(log_path, rows)
            saved = step
    bar.close()

    final = out / "unet"
    _save_pretrained_atomic(ema.to("cpu"), final, safe_serialization=True)
    _save_pretrained_atomic(build_scheduler(), out / "scheduler")
    save_loss_curve(log_path, out / "loss_curve.png")
    save_samples(out, out / "samples.png", n=cfg["n_samples"], n_steps=100, seed=cfg["seed"], device=dev)
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    write_text(out / "training.json", json.dumps(dict(config=_jsonable(cfg), steps=step,
                                                      wall_time_s=round(ck["elapsed"], 1),
                                                      torch=torch.__version__, device_name=_device_name(dev)),
                                                 indent=2))
    return final


def save_loss_curve(log_path: Path, png: Path) -> None:
    """Training loss (raw and a 100-step moving average) against step."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from .io import save_figure

    log = pd.read_csv(log_path)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(log["step"], log["loss"], alpha=0.3, lw=0.5, label="loss")
    ax.plot(log["step"], log["loss"].rolling(100, min_periods=1).mean(), label="moving average (100)")
    ax.set(yscale="log", xlabel="step", ylabel="noise MSE", title="base DDPM training")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, png, dpi=120)
    plt.close(fig)


def save_samples(model_dir: Path, png: Path, n: int = 64, n_steps: int = 100, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
    """A grid of DDIM samples from the exported EMA model (8 per row)."""
    from .diffusion import load_diffusion
    from .plotting import save_grid

    d = load_diffusion(model_dir, device=device)
    xT = torch.randn(n, 3, d.sample_size, d.sample_size, generator=torch.Generator().manual_seed(seed))
    x0 = torch.cat([d.generate(b, n_steps).cpu() for b in xT.split(32)])
    save_grid(list(x0.split(8)), png, scale=2)


def _save_pretrained_atomic(obj, folder: Path, **kwargs) -> None:
    """``save_pretrained`` into a temporary folder renamed over ``folder``: a kill never leaves half a model."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700; a model folder is meant to be read by others
    try:
        obj.save_pretrained(tmp, **kwargs)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _device_name(dev: torch.device) -> str:
    """What trained the model, for training.json: the GPU's name, or the CPU's."""
    import platform

    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU {platform.processor() or platform.machine()}"


def _jsonable(cfg: dict) -> dict:
    return json.loads(json.dumps(cfg))


def _read_log(path: Path, upto: int) -> list[tuple[int, float, float]]:
    if not path.exists():
        return []
    with open(path) as f:
        rows = [(int(r["step"]), float(r["loss"]), float(r["lr"])) for r in csv.DictReader(f)]
    return [r for r in rows if r[0] <= upto]


def _write_log(path: Path, rows) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "lr"])
        w.writerows(rows)


def main(argv=None) -> None:
    print(train(**parse_options(DEFAULTS, __doc__, argv)))


if __name__ == "__main__":
    main()
