"""Attribute classifiers for the success rate (Eq. 14): a small CNN for the 32 px toy presets, a
torchvision ResNet-18 for real images (64 px and up), fine-tuned from ImageNet weights when
``resnet18-f37072fd.pth`` is in the torch hub cache and trained from scratch otherwise."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .images import Images, as_images
from .io import save_torch


class SmallCNN(nn.Module):
    """``blocks`` strided conv blocks (widths doubling up to 4 × ``width``), global pooling, one
    logit ("has the target attribute")."""

    def __init__(self, width: int = 32, blocks: int = 3) -> None:
        super().__init__()
        widths = [3] + [width * min(2 ** i, 4) for i in range(blocks)]
        self.features = nn.Sequential(*[m for a, b in zip(widths, widths[1:]) for m in (nn.Conv2d(a, b, 3, 2, 1), nn.SiLU())])
        self.head = nn.Linear(widths[-1], 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)).squeeze(1)


class ResNetClassifier(nn.Module):
    """torchvision ResNet-18 with one logit; images in [-1, 1] are normalised as ImageNet's were."""

    def __init__(self, imagenet_weights: str | None = None) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.net = resnet18()
        if imagenet_weights is not None:
            self.net.load_state_dict(torch.load(imagenet_weights, map_location="cpu", weights_only=True))
        self.net.fc = nn.Linear(self.net.fc.in_features, 1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the logit (the FD features on real presets would come from here)."""
        n = self.net
        x = ((x + 1) / 2 - self.mean) / self.std
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return torch.flatten(n.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.embed(x)).squeeze(1)


SMALL_CNN_RECORD = dict(kind="small-cnn", init="scratch")
"""What a SmallCNN is (also assumed for classifier files saved before records existed)."""
ROLES = {"selection": dict(half=0, seed_offset=0, width=32, blocks=4, small_cnn_epochs=15),
         "judge": dict(half=1, seed_offset=1, width=48, blocks=4, small_cnn_epochs=15)}
"""Two attribute classifiers, apart in training images, seed and (toy) architecture: ``selection``
picks the checkpoint and α; ``judge`` scores the tables. A network chosen against one classifier is
not judged by it. The SmallCNNs have 4 blocks and 15 epochs: with 3 blocks and 5 the selection one
misread up to 31 % of a preset's validation images or their counterfactuals (toy-age, toy-smile),
with 4 and 15 at most 1.6 % (``benchmarks/classifier_strength.py``, docs/experiments.md). The ResNet
trains ``train_classifier``'s default epochs."""

RESNET_MIN_SIZE = 64
"""Images at least this large (the real presets, 256 px) get the ResNet-18; smaller ones the SmallCNN."""


def build_classifier(image_size: int, imagenet_weights=None, width: int = 32, blocks: int = 3) -> tuple[nn.Module, dict]:
    """The attribute classifier for an image size and a record of what it is (saved beside its
    weights): ``kind`` small-cnn (of ``width`` and ``blocks``) | resnet18, ``init`` scratch |
    imagenet (with the file used)."""
    from .metrics import Unavailable
    from .weights import resnet18_file

    if image_size < RESNET_MIN_SIZE:
        return SmallCNN(width, blocks), dict(SMALL_CNN_RECORD, width=width, blocks=blocks)
    found = resnet18_file(imagenet_weights)
    if isinstance(found, Unavailable):
        return ResNetClassifier(), dict(kind="resnet18", init="scratch", why=found.reason)
    return ResNetClassifier(str(found)), dict(kind="resnet18", init="imagenet", weights=found.name)


def describe(record: dict) -> str:
    """One line for notebooks and tables: which classifier, and from what start."""
    if record["kind"] == "small-cnn":
        return (f"SmallCNN (width {record.get('width', 32)}, {record.get('blocks', 3)} blocks) trained from scratch"
                + (f" for {record['epochs']} epochs" if "epochs" in record else ""))
    if record["init"] == "imagenet":
        return f"ResNet-18 fine-tuned from ImageNet ({record['weights']})"
    return f"ResNet-18 trained from scratch ({record.get('why', 'no ImageNet weights')})"


def train_classifier(model: nn.Module, x: torch.Tensor | Images, y: torch.Tensor, epochs: int = 5,
                     batch_size: int = 64, lr: float | None = None, seed: int = 0, progress: bool = True) -> nn.Module:
    """Fit ``model`` on images in [-1, 1] with binary labels (1 = target), on the model's device;
    ``x`` is read a batch at a time (``Images.batches``). ``lr`` None: 2e-3 for the SmallCNN, 3e-4
    for the ResNet."""
    x = as_images(x)
    torch.manual_seed(seed)
    dev = next(model.parameters()).device
    lr = lr if lr is not None else (2e-3 if isinstance(model, SmallCNN) else 3e-4)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(epochs), desc="train attribute classifier", disable=not progress):
        order = torch.randperm(len(x), generator=g)
        for xb, idx in zip(x.batches(order, batch_size), order.split(batch_size)):
            loss = F.binary_cross_entropy_with_logits(model(xb.to(dev)), y[idx].float().to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor | Images, batch_size: int = 256) -> torch.Tensor:
    """Predicted class (bool: target) per image, ``batch_size`` images read at a time."""
    dev = next(model.parameters()).device
    return torch.cat([model(b.to(dev)).cpu() > 0 for b in x.split(batch_size)])


def edit_success(model: nn.Module, original: torch.Tensor, edited: torch.Tensor, original_is_target: bool,
                 batch_size: int = 256) -> tuple[float, int]:
    """Eq. 14 for one direction, counted like the paper's code: only images whose original is
    classified correctly count; an edit succeeds when the edited image is predicted as the other
    class. Returns (success rate, images counted); the rate is nan when none counts."""
    counted = predict(model, original, batch_size) == original_is_target
    if not counted.any():
        return float("nan"), 0
    return (predict(model, edited, batch_size)[counted] != original_is_target).float().mean().item(), int(counted.sum())


def swap_success(model: nn.Module, original_bg, original_tg, added, removed) -> dict:
    """Eq. 14 in both directions (backgrounds given the attribute, targets stripped of it); ``sr`` is
    their mean, ``sr_min`` the weaker direction (what picks the best checkpoint: a network that only
    removes, by wrecking images, has not separated anything)."""
    add, n_add = edit_success(model, original_bg, added, original_is_target=False)
    rem, n_rem = edit_success(model, original_tg, removed, original_is_target=True)
    counted = [v for v in (add, rem) if v == v]  # NaN: no image of that direction could be counted
    return dict(sr_add=add, sr_remove=rem, sr=(add + rem) / 2, sr_min=min(counted) if counted else float("nan"),
                n_counted=n_add + n_rem)


def fit_attribute_classifier(data: dict, seed: int = 0, progress: bool = True, device=None, role: str = "selection"):
    """An SR classifier of ``role`` (``ROLES``): trained on its half of the training images (every
    other one), with its seed and (below 64 px) its SmallCNN; ResNet-18 above, from ImageNet weights
    when present (``build_classifier`` says which); on CUDA when available. Returns (model, test
    accuracy); ``model.record`` says what it is and its role."""
    r = ROLES[role]
    bg, tg = data["train_bg"].x[r["half"]::2], data["train_tg"].x[r["half"]::2]
    x, y = Images.concat([bg, tg]), torch.cat([torch.zeros(len(bg)), torch.ones(len(tg))])
    seed = seed + r["seed_offset"]
    torch.manual_seed(seed)
    model, record = build_classifier(x.shape[-1], width=r["width"], blocks=r["blocks"])
    record["role"] = role
    epochs = dict(epochs=r["small_cnn_epochs"]) if isinstance(model, SmallCNN) else {}
    record.update(epochs)
    print(f"attribute classifier ({role}): {describe(record)}, {len(x)} training images")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = train_classifier(model.to(device), x, y, seed=seed, progress=progress, **epochs)
    model.record = record
    correct = torch.cat([~predict(model, data["test_bg"].x), predict(model, data["test_tg"].x)])
    return model, correct.float().mean().item()


def save_classifier(model, accuracy: float, path: str | Path) -> None:
    save_torch(dict(state=model.state_dict(), test_accuracy=accuracy,
                    record=getattr(model, "record", SMALL_CNN_RECORD)), path)


def load_classifier(path: str | Path):
    """(model, test accuracy) from ``save_classifier``'s file; ``model.record`` says what it is."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    record = ck.get("record", SMALL_CNN_RECORD)  # files from before the ResNet
    model = SmallCNN(record.get("width", 32), record.get("blocks", 3)) if record["kind"] == "small-cnn" \
        else ResNetClassifier()
    model.load_state_dict(ck["state"])
    model.record = record
    return model.eval(), ck["test_accuracy"]
