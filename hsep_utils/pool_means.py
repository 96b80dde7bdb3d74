"""Mean codes at every edited step, computed once from a trained mapping network over the latent warm-up's
pool of training images (``preset_training.pool_means``) and kept beside the network, tied to its bytes: what
two edits beyond the paper edit with — ``donor_prior`` (the training targets' mean S) and ``common_shift``
(the two classes' mean C)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .io import save_torch


def checkpoint_digest(path: Path) -> str:
    """What ties a file of means to the network it was computed with."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_beside(checkpoint: Path, name: str, means: dict[int, torch.Tensor], **extra) -> Path:
    """``name`` beside ``checkpoint``: the timesteps, their means stacked, ``extra`` and the checkpoint's digest."""
    path = Path(checkpoint).parent / name
    save_torch({"timesteps": list(means), "mean": torch.stack(list(means.values())), **extra,
                "checkpoint_sha256": checkpoint_digest(checkpoint)}, path)
    return path


def load_beside(checkpoint: Path, name: str, needed_by: str, what: str, fix: str) -> dict[int, torch.Tensor]:
    """The means ``save_beside`` wrote for the network at ``checkpoint``; refused when missing (``needed_by``:
    the parameter that asks for them, ``what``: what they are) or computed with another network."""
    path = Path(checkpoint).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{needed_by} needs {path}, {what}: {fix}")
    found = torch.load(path, map_location="cpu", weights_only=True)
    if found["checkpoint_sha256"] != checkpoint_digest(checkpoint):
        raise ValueError(f"{path} was computed with another network than {checkpoint}: {fix}")
    return dict(zip(found["timesteps"], found["mean"]))


def at_step(means: dict[int, torch.Tensor], t, like: torch.Tensor, what: str) -> torch.Tensor:
    """``means`` at step ``t``, as ``like``; refused at a step the means were not computed for."""
    if int(t) not in means:
        raise ValueError(f"the {what} holds the means at {len(means)} timesteps of its preset's DDIM steps, "
                         f"not t = {int(t)}: edit with the preset's ddim_steps and t_edit_max")
    return means[int(t)].to(like)
