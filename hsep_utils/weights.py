"""Pretrained weights the metrics and image losses need, found where each library caches them.

Nothing here downloads: a missing file gives ``Unavailable`` whose reason names the exact file and
the folder it goes in, so a table can say why a metric is absent instead of printing a number from
a random network. Each lookup also takes an explicit path: the file itself (under its original
name, which clean-fid's loader needs) or the folder holding it.

    python -m hsep_utils.weights [--preset ffhq-glasses]   # where each file is looked for, and whether it is there
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Callable

import torch

from .metrics import Unavailable

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet, LPIPS's backbone
FACENET_FILE = "20180402-114759-vggface2.pt"  # facenet-pytorch InceptionResnetV1(pretrained="vggface2")
INCEPTION_FILE = "inception-2015-12-05.pt"  # clean-fid's TorchScript Inception (FID)
RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's ImageNet ResNet-18, start of the real presets' SR classifier
VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG-16, the LPIPS metric's backbone (the loss's is AlexNet)
ARCFACE_FILE = "model_ir_se50.pth"  # InsightFace IR-SE50 as pixel2style2pixel ships it: the ID metric of real presets
URLS = {
    RESNET18_FILE: "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    ALEXNET_FILE: "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    FACENET_FILE: "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    INCEPTION_FILE: "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
    VGG16_FILE: "https://download.pytorch.org/models/vgg16-397923af.pth",
    ARCFACE_FILE: "the IR-SE50 model of the 'Pretrained Models' table in https://github.com/eladrich/pixel2style2pixel",
}


def torch_hub_file(name: str) -> Path:
    """Where torchvision looks for ``name``: ``$TORCH_HOME/hub/checkpoints`` (default ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def facenet_cache_file() -> Path:
    """Where facenet-pytorch looks: ``$TORCH_HOME/checkpoints`` (no ``hub/``, unlike torchvision)."""
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(home).expanduser() / "checkpoints" / FACENET_FILE


def cleanfid_cache_file() -> Path:
    """Where clean-fid looks: ``/tmp`` (``./`` on Windows), as ``cleanfid.features.feature_extractor`` does."""
    return Path("./" if platform.system() == "Windows" else "/tmp") / INCEPTION_FILE


def _find(name: str, default: Path, path: str | Path | None, what: str) -> Path | Unavailable:
    target = default if path is None else Path(path).expanduser()
    if target.is_dir() or target.name != name:
        target = target / name
    if target.is_file():
        return target
    return Unavailable(f"{what} needs {name}: place it at {_shown(target)} (download: {URLS[name]})")


def _shown(path: Path) -> str:
    """``path`` with the home folder as ``~``: messages copied into committed tables name no user."""
    home = str(Path.home())
    return "~" + str(path)[len(home):] if str(path).startswith(home + os.sep) else str(path)


def alexnet_file(path: str | Path | None = None) -> Path | Unavailable:
    """LPIPS (alex) backbone. ``lpips`` loads it through torchvision from the torch hub cache only, so
    an explicit path is checked but to use another folder set ``TORCH_HOME``."""
    return _find(ALEXNET_FILE, torch_hub_file(ALEXNET_FILE), path, "LPIPS (torchvision's AlexNet)")


def vgg16_file(path: str | Path | None = None) -> Path | Unavailable:
    """The LPIPS metric's VGG-16 backbone; torch hub cache only, as ``alexnet_file``."""
    return _find(VGG16_FILE, torch_hub_file(VGG16_FILE), path, "the LPIPS metric (VGG, torchvision's VGG-16)")


def arcface_file(path: str | Path | None = None) -> Path | Unavailable:
    """The ID metric of real presets (``arcface``); default ``models/model_ir_se50.pth``."""
    from .parameters import REPO_ROOT

    return _find(ARCFACE_FILE, REPO_ROOT / "models" / ARCFACE_FILE, path, "the ID metric (ArcFace IR-SE50)")


def lpips_model(device: str | torch.device = "cpu", net: str = "alex"):
    """LPIPS over ``net`` (``alex``: the loss's; ``vgg``: the metric's when its VGG-16 is there)
    when torchvision's backbone weights are in the torch hub cache, else ``Unavailable``."""
    path = {"alex": alexnet_file, "vgg": vgg16_file}[net]()
    if isinstance(path, Unavailable):
        return path
    import lpips

    return lpips.LPIPS(net=net, verbose=False).eval().requires_grad_(False).to(device)


def resnet18_file(path: str | Path | None = None) -> Path | Unavailable:
    """ImageNet ResNet-18 for fine-tuning the attribute classifier (from scratch without it)."""
    return _find(RESNET18_FILE, torch_hub_file(RESNET18_FILE), path, "the ResNet-18 attribute classifier's ImageNet start")


def facenet_file(path: str | Path | None = None) -> Path | Unavailable:
    """The identity encoder of the ID metric and loss (facenet-pytorch, VGGFace2)."""
    return _find(FACENET_FILE, facenet_cache_file(), path, "ID (facenet-pytorch InceptionResnetV1, vggface2)")


def inception_file(path: str | Path | None = None) -> Path | Unavailable:
    """The Inception network of clean-fid."""
    return _find(INCEPTION_FILE, cleanfid_cache_file(), path, "FID (clean-fid Inception)")


def facenet_embedder(device: str | torch.device = "cpu", path: str | Path | None = None
                     ) -> Callable[[torch.Tensor], torch.Tensor] | Unavailable:
    """f_id for the ID metric / loss: images in [-1, 1] (any size) → 512-d VGGFace2 embeddings.

    facenet-pytorch expects 160 px faces standardised as (x − 127.5) / 128, which is [-1, 1] up to
    0.4 %; FFHQ and CelebA-HQ are aligned face crops, so the whole image is resized (no detector).
    The frozen network still passes gradients to its input, as the ID loss needs.
    """
    file = facenet_file(path)
    if isinstance(file, Unavailable):
        return file
    from facenet_pytorch import InceptionResnetV1

    net = InceptionResnetV1(pretrained=None)
    state = torch.load(file, map_location="cpu", weights_only=True)
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("logits.")})
    net = net.eval().requires_grad_(False).to(device)

    def embed(x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x.to(device), size=(160, 160), mode="bilinear", align_corners=False,
                                            antialias=True)
        return net(x)

    return embed


def inception_extractor(device: str | torch.device = "cpu", path: str | Path | None = None):
    """clean-fid's Inception (2048-d pool features of images in [0, 255]) or ``Unavailable``."""
    file = inception_file(path)
    if isinstance(file, Unavailable):
        return file
    from cleanfid.inception_torchscript import InceptionV3W

    return InceptionV3W(str(file.parent), download=False).eval().to(device)


def base_model_status(base_model: str | Path) -> str:
    """Where the base DDPM is, or what to place where; checks the files without loading (or converting) them."""
    from .adm import KNOWN_CHECKPOINTS, P2_README, cache_root
    from .diffusion import model_files

    p = Path(base_model)
    if p.suffix == ".pt":
        if p.is_file():
            return f"{_shown(p)} (guided-diffusion checkpoint, converted on first load into {_shown(cache_root())})"
        where = f"download: {P2_README}" if p.name in KNOWN_CHECKPOINTS else "a guided-diffusion checkpoint"
        return str(Unavailable(f"the base model needs {p.name}: place it at {_shown(p)} ({where})"))
    try:
        return _shown(model_files(base_model)[0])
    except FileNotFoundError as e:
        return str(Unavailable(str(e)))


def report(facenet: str | Path | None = None, inception: str | Path | None = None,
           base_model: str | Path | None = None, arcface: str | Path | None = None) -> dict[str, str]:
    """Each weight file: the path found, or why it is unavailable (``*_metric``: the judges that
    score instead of the loss's network when present)."""
    found = dict(lpips=alexnet_file(), lpips_metric=vgg16_file(), id=facenet_file(facenet),
                 id_metric=arcface_file(arcface), fid=inception_file(inception))
    return ({} if base_model is None else dict(base=base_model_status(base_model))) | {k: str(v) for k, v in found.items()}


def preset_weight_paths(params: dict) -> dict:
    """The preset's ``facenet_weights``, ``inception_weights``, ``arcface_weights`` (relative: to the
    repository), None where it leaves a file to its default place."""
    from .presets import repo_path

    return {k: repo_path(params[k]) if params.get(k) else None
            for k in ("facenet_weights", "inception_weights", "arcface_weights")}


def main(argv=None) -> None:
    import argparse

    from .presets import load_preset, repo_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", help="take facenet_weights / inception_weights from this preset")
    a = ap.parse_args(argv)
    params = load_preset(a.preset) if a.preset else {}
    paths = preset_weight_paths(params)
    base = repo_path(params["base_model"]) if params.get("base_model") else None
    for metric, status in report(paths["facenet_weights"], paths["inception_weights"], base,
                                 paths["arcface_weights"]).items():
        print(f"{metric:12s} {status}")


if __name__ == "__main__":
    main()
