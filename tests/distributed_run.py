"""Trains and evaluates a tiny mapping network; run by tests/test_distributed.py once as a plain
process and once under ``accelerate launch`` with 2 processes. Writes ``result.pt`` in argv[1]."""
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_unet  # noqa: E402

from hsep_utils.base_ddpm import build_scheduler  # noqa: E402
from hsep_utils.classifier import SmallCNN  # noqa: E402
from hsep_utils.diffusion import Diffusion  # noqa: E402
from hsep_utils.distributed import ranks  # noqa: E402
from hsep_utils.preset_training import train_preset  # noqa: E402
from hsep_utils.split_edits import edit_pairs  # noqa: E402
from hsep_utils.splits import Split  # noqa: E402
from hsep_utils.train import InversionCache, TrainConfig  # noqa: E402

torch.set_num_threads(1)
out = Path(sys.argv[1])
diffusion = Diffusion(tiny_unet(), build_scheduler().alphas_cumprod)
g = torch.Generator().manual_seed(0)


def split(name: str, n: int) -> Split:
    return Split(pd.DataFrame({"file": [f"{name}/{i}.png" for i in range(n)]}), torch.rand(n, 3, 16, 16, generator=g) * 2 - 1)


data = {k: split(k, n) for k, n in (("train_bg", 8), ("train_tg", 8), ("val_bg", 3), ("val_tg", 3),
                                    ("test_bg", 5), ("test_tg", 5))}
torch.manual_seed(0)
classifier = SmallCNN().eval()
cfg = TrainConfig(depth=2, n_steps=4, batch_per_class=4, epochs=2, validate_every=1, kl_bins=4, latent_warmup_steps=3,
                  latent_warmup_pool=7)  # the warm-up pool in uneven shares (3 + 4)
net = train_preset(diffusion, data, cfg, out / "mapping", classifier, progress=False)
added, removed = edit_pairs(diffusion, net, InversionCache(diffusion, 4), data["test_bg"], data["test_tg"], 4, 0)
if ranks().is_main:
    torch.save(dict(net=net.state_dict(), added=added, removed=removed, world=ranks().world), out / "result.pt")
