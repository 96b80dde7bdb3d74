"""The ffhq-glasses notebooks 00–04 end to end at the paper's resolution, on one GPU, in minutes:
every code path the real presets take (the FFHQ splitter, the P2 layout, chunked inversion, edits and
metrics), with peak GPU memory and wall time per notebook.

Nothing here needs the real data or weights: the U-Net has the P2-256 layout (``adm.CONFIGS``) with
random weights, and the images are toy faces drawn at 256 px, written in the FFHQ annotation format
(``ffhq-features-dataset`` json/ + ``images1024x1024/``). So the figures are costs, not results.

    python benchmarks/gpu_check.py --out /tmp/gpu_check                  # 256 px, sized for ~6 min on an H200
    python benchmarks/gpu_check.py --out /tmp/smoke --tiny --n-test 6     # a CPU smoke run (a tiny layout, 32 px)

Peak memory is read with ``nvidia-smi`` every 0.2 s while each notebook's kernel runs (the kernel is
another process); on a machine without it the column says so. Writes ``<out>/gpu_check.json``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hsep_utils.toy import render, sample_factors  # noqa: E402

TINY_FLAGS = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="16",
                  num_head_channels=16, resblock_updown=True, use_scale_shift_norm=True, learn_sigma=True)


def write_ffhq(root: Path, n_per_class: int, size: int) -> tuple[Path, Path]:
    """``n_per_class`` NoGlasses and as many Sunglasses images, as FFHQ's json/ + images1024x1024/."""
    jdir, idir = root / "ffhq-features-dataset" / "json", root / "images1024x1024"
    jdir.mkdir(parents=True, exist_ok=True)
    for i in range(2 * n_per_class):
        glasses = i % 2
        name = f"{i:05d}"
        face = {"faceAttributes": {"glasses": "Sunglasses" if glasses else "NoGlasses", "age": 30.0}}
        (jdir / f"{name}.json").write_text(json.dumps([face]))
        img = render(sample_factors(0, i, glasses=glasses), size, supersample=1)
        (idir / f"{i // 1000 * 1000:05d}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(idir / f"{i // 1000 * 1000:05d}" / f"{name}.png")
    return jdir, idir


def random_base_model(out: Path, tiny: bool) -> Path:
    """A random-weight UNet2DModel of the P2-256 layout (or a tiny one) and its DDPM schedule."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    from hsep_utils.adm import CONFIGS, flags_from_dict, scheduler_config, unet_config

    flags = flags_from_dict(TINY_FLAGS) if tiny else CONFIGS["p2-256"]
    torch.manual_seed(0)
    UNet2DModel(**unet_config(flags)).save_pretrained(out / "unet")
    DDPMScheduler(**scheduler_config(flags)).save_pretrained(out / "scheduler")
    return out


class PeakGpuMemory:
    """The highest ``nvidia-smi`` memory.used (MiB) while the ``with`` block runs, over the reading
    before it; None without nvidia-smi."""

    def __enter__(self):
        self.base = self.peak = self._used()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _used(self) -> int | None:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
            return int(out.split()[0])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return None

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            used = self._used()
            if used is not None and self.peak is not None:
                self.peak = max(self.peak, used)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> int | None:
        return None if self.base is None else self.peak - self.base


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="working folder (data, model, results, gpu_check.json)")
    ap.add_argument("--tiny", action="store_true", help="a tiny layout at 32 px: a smoke run on a CPU")
    ap.add_argument("--n-train", type=int, default=32, help="training images per class (2 batches of 8 + 8, "
                    "16 held out for validation)")
    ap.add_argument("--n-test", type=int, default=128, help="test images per class (all edited and scored)")
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps")
    ap.add_argument("--eval-batch-size", type=int, default=32, help="images per DDIM pass: several chunks per split")
    ap.add_argument("--notebooks", nargs="+", default=["00", "01", "02", "03", "04"])
    ap.add_argument("--unet-dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="the unet_dtype parameter")
    ap.add_argument("--compile", action="store_true", help="the compile parameter")
    a = ap.parse_args(argv)

    from hsep_utils.reproduce import run_preset

    out = Path(a.out)
    shutil.rmtree(out / "results", ignore_errors=True)
    size = 32 if a.tiny else 256
    t0 = time.time()
    n_val = min(16, a.n_train // 2)
    jdir, idir = write_ffhq(out / "ffhq", a.n_train + a.n_test, size)
    model = random_base_model(out / "model", a.tiny)
    print(f"fixture and model: {time.time() - t0:.0f} s", flush=True)
    overrides = dict(annotations=str(jdir), images=str(idir), base_model=str(model), image_size=size,
                     data_root=str(out / "data"), results_root=str(out / "results"), scale="full",
                     n_train_per_class=a.n_train, n_test_per_class=a.n_test, n_val_per_class=n_val,
                     batch_per_class=min(8, (a.n_train - n_val) // 2), train_batches=2, validate_every=1,
                     ddim_steps=a.steps, hspace_steps=[10, a.steps], n_recon_images=min(64, 2 * a.n_test),
                     n_edit_images=a.n_test, eval_batch_size=a.eval_batch_size, device="auto",
                     unet_dtype=a.unet_dtype, compile=a.compile)
    found = dict(tiny=a.tiny, size=size, unet_dtype=a.unet_dtype, compile=a.compile,
                 **{k: v for k, v in overrides.items() if isinstance(v, int) and not isinstance(v, bool)}, notebooks={})
    for nb in a.notebooks:
        started = time.time()
        with PeakGpuMemory() as peak:
            run_preset("ffhq-glasses", overrides, only=[nb], show_output=False, log=lambda *m: None)
        found["notebooks"][nb] = dict(seconds=round(time.time() - started, 1), peak_gpu_mib=peak.mib)
        print(f"notebook {nb}: {found['notebooks'][nb]['seconds']} s, peak GPU memory "
              f"{'n/a (no nvidia-smi)' if peak.mib is None else f'{peak.mib} MiB'}", flush=True)
    import torch

    found["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    (out / "gpu_check.json").write_text(json.dumps(found, indent=1))
    print(json.dumps(found, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
