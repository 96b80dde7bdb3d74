"""Deterministic DDIM inversion and generation on a frozen U-Net, with h-space edits (Eq. 3–4).

Timesteps are ``round(linspace(0, 999, n_steps))`` as in Asyrp and the paper's code. Inversion
starts from x0 treated as x at ``seq[0] = 0`` and walks ``seq[0] → seq[1] → … → seq[-1]``
(n_steps − 1 U-Net calls); generation walks back ``seq[-1] → … → seq[0] → -1`` (n_steps calls;
ᾱ₋₁ = 1, so the last step returns the predicted x0). Predicted x0 is never clipped: diffusers'
``DDIMInverseScheduler`` spaces timesteps differently and clips by default, which breaks exact
reconstruction, so we do not use it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .cpu_memory import keep_freed_memory
from .hspace import check_supported, decode, encode

EditFn = Callable[[torch.Tensor, int], torch.Tensor]
"""``edit_fn(h, t) -> h̃``: replaces the bottleneck features at timestep t."""


def ddim_timesteps(n_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """``round(linspace(0, T − 1, n_steps))`` as Python ints, ascending."""
    if n_steps < 2:
        raise ValueError(f"n_steps must be ≥ 2, got {n_steps}")
    return [int(t) for t in np.round(np.linspace(0, num_train_timesteps - 1, n_steps))]


def in_edit_window(t: int, t_edit: int, t_edit_max: int | None) -> bool:
    """Whether timestep ``t`` is edited: t_edit <= t, and t < t_edit_max when given (the noisiest
    steps left to the original h)."""
    return t_edit <= t and (t_edit_max is None or t < t_edit_max)


def predicted_x0(x: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
    """x0 as x_t and ε at ᾱ = a_t predict it (DDIM's P_t)."""
    return (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()


def ddim_update(x: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor, a_next: torch.Tensor,
                eta: float = 0.0, generator: torch.Generator | None = None,
                eps_direction: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM move from ᾱ = a_t to ᾱ = a_next (either direction). Returns (x_next, predicted x0).

    ``eps`` gives the predicted x0 (P_t); ``eps_direction`` (default ``eps``) the direction back to
    x_t (D_t). They differ in Asyrp's asymmetric reverse process (the paper's Eq. 4): P_t from the
    edited h̃, D_t from the original h. With one ε for both, an edit of ε at large t is almost
    cancelled: x_next moves by (√(1 − ᾱ_next) − √(ᾱ_next / ᾱ_t)·√(1 − ᾱ_t))·Δε ≈ 0 where ᾱ ≈ 0."""
    x0 = predicted_x0(x, eps, a_t)
    d = eps if eps_direction is None else eps_direction
    if eta == 0:
        return a_next.sqrt() * x0 + (1 - a_next).sqrt() * d, x0
    sigma = eta * ((1 - a_next) / (1 - a_t) * (1 - a_t / a_next)).clamp(min=0).sqrt()
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return a_next.sqrt() * x0 + (1 - a_next - sigma**2).sqrt() * d + sigma * noise, x0


def gaussian_blur(m: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, 1, H, W) maps blurred by a separable Gaussian of ``sigma`` pixels (edges replicated)."""
    r = max(1, round(2 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=m.dtype, device=m.device) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    m = F.conv2d(F.pad(m, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(m, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def masked_edit(eps: torch.Tensor, eps_original: torch.Tensor, threshold: float) -> torch.Tensor:
    """ε with the edit's change kept only where it is strong: where the change's channel-mean magnitude,
    blurred over size/32 pixels (1 at 32 px, 8 at 256 px), reaches ``threshold`` of the image's largest;
    elsewhere the original h's ε. DiffEdit's idea (a mask from the edit's own noise difference), taken
    from the edit itself at every step: no box or segmentation is used. An image the edit leaves alone
    (a swap's donor) keeps its ε."""
    change = eps - eps_original
    strength = gaussian_blur(change.abs().mean(1, keepdim=True).float(), eps.shape[-1] / 32)
    strength = strength / strength.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1, 1)
    return eps_original + (strength >= threshold).to(eps.dtype) * change


@dataclass
class Trajectory:
    """Per-step record of a DDIM pass, in the order the steps ran."""

    timesteps: list[int] = field(default_factory=list)
    h: list[torch.Tensor] = field(default_factory=list)  # the U-Net's own h at each step
    h_used: list[torch.Tensor] = field(default_factory=list)  # h̃ where edited, else h
    x0_pred: list[torch.Tensor] = field(default_factory=list)
    xt: list[torch.Tensor] = field(default_factory=list)  # the step's input


class Diffusion:
    """A frozen ``UNet2DModel`` and its ᾱ schedule, with DDIM inversion and generation."""

    def __init__(self, unet, alphas_cumprod: torch.Tensor, source: str = "") -> None:
        check_supported(unet)
        self.unet = unet.eval().requires_grad_(False)
        if self.unet.device.type == "cpu":
            keep_freed_memory()  # big activations reused, not page-faulted back every pass
        self.alphas_cumprod = alphas_cumprod.to(torch.float64)
        self.source = source

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    @property
    def sample_size(self) -> int:
        s = self.unet.config.sample_size
        return s if isinstance(s, int) else s[0]

    def timesteps(self, n_steps: int) -> list[int]:
        return ddim_timesteps(n_steps, self.num_train_timesteps)

    def alpha(self, t: int, like: torch.Tensor) -> torch.Tensor:
        """ᾱ_t as a scalar tensor of ``like``'s dtype/device; ᾱ₋₁ = 1."""
        a = 1.0 if t < 0 else float(self.alphas_cumprod[t])
        return torch.tensor(a, dtype=like.dtype, device=like.device)

    def eps(self, x: torch.Tensor, t: int, edit_fn: EditFn | None = None):
        """Predicted noise and (h, h̃) at one step."""
        enc = encode(self.unet, x, t)
        h_used = enc.h if edit_fn is None else edit_fn(enc.h, t)
        return decode(self.unet, enc, h_used), enc.h, h_used

    def eps_pair(self, x: torch.Tensor, t: int, edit_fn: EditFn):
        """(ε from h̃, ε from the original h, h, h̃) at one step: one encoder pass, and a second
        decoder pass only for the images whose h the edit changed (not a swap's donors)."""
        enc = encode(self.unet, x, t)
        h_used = edit_fn(enc.h, t)
        eps = decode(self.unet, enc, h_used)
        changed = (h_used != enc.h).flatten(1).any(1)
        eps_direction = eps.clone()
        if changed.any():
            eps_direction[changed] = decode(self.unet, enc.rows(changed))
        return eps, eps_direction, enc.h, h_used

    @torch.no_grad()
    def invert(self, x0: torch.Tensor, n_steps: int, return_trajectory: bool = False, progress: bool = False):
        """Deterministic DDIM inversion x0 → xT (η = 0, no clipping)."""
        seq = self.timesteps(n_steps)
        x, traj = x0.to(self.device), Trajectory()
        for t, t_next in tqdm(list(zip(seq[:-1], seq[1:])), desc="invert", disable=not progress):
            eps, h, _ = self.eps(x, t)
            x_next, x0_pred = ddim_update(x, eps, self.alpha(t, x), self.alpha(t_next, x))
            if return_trajectory:
                _record(traj, t, h, h, x0_pred, x)
            x = x_next
        return (x, traj) if return_trajectory else x

    @torch.no_grad()
    def generate(self, xT: torch.Tensor, n_steps: int, edit_fn: EditFn | None = None, t_edit: int = 0,
                 eta: float = 0.0, generator: torch.Generator | None = None, return_trajectory: bool = False,
                 progress: bool = False, asymmetric: bool = True, t_edit_max: int | None = None,
                 start_below: int | None = None, stop_below: int | None = None, edit_mask: float = 0.0):
        """DDIM generation xT → x0 (Eq. 4): h̃ = edit_fn(h, t) for t ≥ t_edit (and t < t_edit_max
        when given: the noisiest steps left unedited), the original h elsewhere, where optional η > 0
        adds DDIM noise (default off: fully deterministic).

        ``edit_mask`` (beyond the paper; 0: off): at every edited step the edit changes ε only where
        its change is at least this fraction of the image's strongest (``masked_edit``), the rest
        follows the original h — one more decoder pass per step, as the asymmetric process takes.

        ``stop_below``: return the state entering the first step with t < ``stop_below`` instead of
        x0; ``start_below``: ``xT`` is such a state, and only the steps with t < ``start_below`` run
        (an unedited start shared by many edits is generated once: ``InversionCache.window_start``).

        ``asymmetric`` (default, as the paper and Asyrp): while editing, h̃ gives the predicted x0
        and the original h the direction term (``eps_pair``: one more decoder pass per step for the
        images whose h the edit changed); ``False`` uses h̃'s ε for both, which cancels most of an
        edit at the noisy steps (see ``ddim_update``)."""
        if not 0 <= edit_mask <= 1:
            raise ValueError(f"edit_mask is a fraction of the strongest change, 0 (off) … 1; got {edit_mask}")
        seq = self.timesteps(n_steps)
        x, traj = xT.to(self.device), Trajectory()
        steps = [(t, t_next) for t, t_next in zip(reversed(seq), reversed([-1] + seq[:-1]))
                 if (start_below is None or t < start_below) and (stop_below is None or t >= stop_below)]
        for t, t_next in tqdm(steps, desc="generate", disable=not progress):
            editing = edit_fn is not None and in_edit_window(t, t_edit, t_edit_max)
            if editing and (asymmetric or edit_mask):
                eps, eps_original, h, h_used = self.eps_pair(x, t, edit_fn)
                if edit_mask:
                    eps = masked_edit(eps, eps_original, edit_mask)
                eps_direction = eps_original if asymmetric else None
            else:
                eps, h, h_used = self.eps(x, t, edit_fn if editing else None)
                eps_direction = None
            x_next, x0_pred = ddim_update(x, eps, self.alpha(t, x), self.alpha(t_next, x),
                                          eta=0.0 if editing or t_next < 0 else eta, generator=generator,
                                          eps_direction=eps_direction)
            if return_trajectory:
                _record(traj, t, h, h_used, x0_pred, x)
            x = x_next
        return (x, traj) if return_trajectory else x

    def reconstruct(self, x0: torch.Tensor, n_steps: int, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
        """Invert then regenerate, in batches (the Fig. 9 study)."""
        out = [self.generate(self.invert(b, n_steps), n_steps).cpu()
               for b in tqdm(x0.split(batch_size), desc=f"reconstruct ({n_steps} steps)", disable=not progress)]
        return torch.cat(out)


def _record(traj: Trajectory, t, h, h_used, x0_pred, xt) -> None:
    traj.timesteps.append(t)
    traj.h.append(h)
    traj.h_used.append(h_used)
    traj.x0_pred.append(x0_pred)
    traj.xt.append(xt)


_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_GET_IT = ("Place a diffusers UNet2DModel there (`save_pretrained` layout: config.json + "
           "diffusion_pytorch_model.safetensors, in the folder itself or in unet/, with scheduler_config.json "
           "beside it or in scheduler/), or name a guided-diffusion checkpoint: the paper's ffhq_p2.pt / "
           "celebahq_p2.pt directly, any other converted by `python -m hsep_utils.adm`; or, on a machine with "
           "network access, download a model such as google/ddpm-ema-celebahq-256 into the Hugging Face cache "
           "(`huggingface-cli download google/ddpm-ema-celebahq-256`) and copy the cache here.")


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A local model directory, the cached snapshot of a Hugging Face id (never downloads), or the
    conversion of a guided-diffusion ``.pt`` checkpoint (``adm.cached_conversion``)."""
    from .parameters import REPO_ROOT

    p = Path(name_or_path)
    if p.suffix == ".pt":
        from .adm import cached_conversion

        return cached_conversion(p)
    if p.exists():
        return p
    if p.is_absolute() and p.is_relative_to(REPO_ROOT):  # a preset's "owner/name" made absolute by repo_path
        name_or_path = p.relative_to(REPO_ROOT).as_posix()
    looks_like_path = str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") != 1
    if not looks_like_path:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(str(name_or_path), local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, OSError) as e:
            raise FileNotFoundError(f"base model {name_or_path!r} is not in the local Hugging Face cache (nor a "
                                    f"directory {p}) and hsep never downloads at run time ({type(e).__name__}). "
                                    f"{_GET_IT}") from None
    raise FileNotFoundError(f"base model directory {p} does not exist. {_GET_IT}")


def model_files(name_or_path: str | Path) -> tuple[Path, Path, Path]:
    """(U-Net folder, weights file, scheduler config) of a local or cached model, checked."""
    root = resolve_model_dir(name_or_path)
    unet_dir = next((d for d in (root / "unet", root) if (d / "config.json").exists()), None)
    if unet_dir is None:
        raise FileNotFoundError(f"{root} has no config.json (looked in {root} and {root / 'unet'}). {_GET_IT}")
    weights = next((unet_dir / w for w in _WEIGHT_FILES if (unet_dir / w).exists()), None)
    if weights is None:
        raise FileNotFoundError(f"{unet_dir} has config.json but no weights ({' or '.join(_WEIGHT_FILES)}). {_GET_IT}")
    sched_file = next((f for f in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json")
                       if f.exists()), None)
    if sched_file is None:
        raise FileNotFoundError(f"{root} has no scheduler_config.json (looked in {root} and {root / 'scheduler'}). "
                                f"{_GET_IT}")
    return unet_dir, weights, sched_file


def model_fingerprint(name_or_path: str | Path) -> str:
    """A short hash of the model's weights and schedule: caches of its outputs are keyed by it, so
    retraining a model at the same path never reuses stale inversions."""
    h = hashlib.sha1()
    for f in model_files(name_or_path):
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""The ``unet_dtype`` parameter's words."""


def load_diffusion(name_or_path: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype | str = torch.float32, compile: bool = False) -> Diffusion:
    """Load a frozen UNet2DModel and its noise schedule, strictly offline; ``dtype`` (or its
    ``DTYPES`` word) is the U-Net's only (``hspace.encode``); ``compile`` runs its blocks through
    ``torch.compile`` (the training step's constant-skip decoder, ``hspace._up_block_constant_skips``,
    calls their parts and runs uncompiled)."""
    from diffusers import DDPMScheduler, UNet2DModel

    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    unet_dir, weights, sched_file = model_files(name_or_path)
    try:
        unet = UNet2DModel.from_pretrained(unet_dir, local_files_only=True, torch_dtype=dtype)
    except (ValueError, RuntimeError, OSError) as e:  # weights of another architecture, or a truncated file
        detail = str(e).split(". If you want", 1)[0].replace("Cannot load  because ", "")  # drop diffusers' bad advice
        raise ValueError(f"{weights} does not load with {unet_dir / 'config.json'} ({type(e).__name__}: {detail}): "
                         f"the file is truncated or corrupt, or the weights and the config come from different "
                         f"models; put the config.json and weights saved together there. {_GET_IT}") from None
    sched = DDPMScheduler.from_config(json.loads(sched_file.read_text()))
    if compile:
        for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
            block.compile()
    return Diffusion(unet.to(device), sched.alphas_cumprod, source=str(name_or_path))
