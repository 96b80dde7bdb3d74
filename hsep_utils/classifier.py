"""Attribute classifiers for the success rate (Eq. 14): a small CNN for toy presets."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


class SmallCNN(nn.Module):
    """Three strided conv blocks, global pooling, one logit ("has the target attribute")."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.SiLU(),
        )
        self.head = nn.Linear(4 * width, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)).squeeze(1)


def train_classifier(x: torch.Tensor, y: torch.Tensor, epochs: int = 5, batch_size: int = 64, lr: float = 2e-3,
                     seed: int = 0, progress: bool = True) -> SmallCNN:
    """Fit a SmallCNN on images in [-1, 1] with binary labels (1 = target)."""
    torch.manual_seed(seed)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="train attribute classifier", disable=not progress):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            loss = F.binary_cross_entropy_with_logits(model(x[idx]), y[idx].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted class (bool: target) per image."""
    dev = next(model.parameters()).device
    return torch.cat([model(b.to(dev)).cpu() > 0 for b in x.split(batch_size)])


def edit_success(model: nn.Module, original: torch.Tensor, edited: torch.Tensor, original_is_target: bool
                 ) -> tuple[float, int]:
    """Eq. 14 for one direction, counted like the paper's code: only images whose original is
    classified correctly count; an edit succeeds when the edited image is predicted as the other
    class. Returns (success rate, images counted); the rate is nan when none counts."""
    counted = predict(model, original) == original_is_target
    if not counted.any():
        return float("nan"), 0
    return (predict(model, edited)[counted] != original_is_target).float().mean().item(), int(counted.sum())


def swap_success(model: nn.Module, original_bg, original_tg, added, removed) -> dict:
    """Eq. 14 in both directions (backgrounds given the attribute, targets stripped of it); ``sr`` is
    their mean, ``sr_min`` the weaker direction (what picks the best checkpoint: a network that only
    removes, by wrecking images, has not separated anything)."""
    add, n_add = edit_success(model, original_bg, added, original_is_target=False)
    rem, n_rem = edit_success(model, original_tg, removed, original_is_target=True)
    counted = [v for v in (add, rem) if v == v]  # NaN: no image of that direction could be counted
    return dict(sr_add=add, sr_remove=rem, sr=(add + rem) / 2, sr_min=min(counted) if counted else float("nan"),
                n_counted=n_add + n_rem)
