import pytest
import torch

from hsep_utils.base_ddpm import build_scheduler, build_unet
from hsep_utils.diffusion import Diffusion


def tiny_unet(size: int = 16, seed: int = 0):
    """A random-weight UNet2DModel small enough for tests that take seconds."""
    torch.manual_seed(seed)
    return build_unet(size=size, block_out_channels=(16, 32), layers_per_block=1, attention_levels=(1,),
                      norm_num_groups=8)


@pytest.fixture
def tiny_diffusion() -> Diffusion:
    return Diffusion(tiny_unet(), build_scheduler().alphas_cumprod)
