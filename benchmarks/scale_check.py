"""Does memory stay flat as the data grows? Notebooks 00–04 of a toy preset at 64 px, on a small
random-weight 64 px U-Net, once with N and once with 4N images per class (everything else equal:
two training batches, the same DDIM steps and chunk size), and the peak RSS of each notebook's
kernel. Paper scale (20k images at 256 px) needs each notebook's peak to grow by at most ~20 %
from N to 4N: what grows with N is data that should be streamed.

    python benchmarks/scale_check.py --out /tmp/scale_check [--n 64] [--steps 5]

Each notebook runs in its own process (``python -m hsep_utils.reproduce --notebooks NN``), whose
children's peak RSS (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, the kernel's) is read
when it ends. Writes ``<out>/scale_check.json``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def small_unet(out: Path) -> Path:
    sys.path.insert(0, str(REPO))
    import torch

    from hsep_utils.base_ddpm import build_scheduler, build_unet

    torch.manual_seed(0)
    build_unet(64, (32, 64, 64), 1, (2,), 8).save_pretrained(out / "unet")
    build_scheduler().save_pretrained(out / "scheduler")
    return out


def run(n: int, out: Path, model: Path, steps: int, notebooks: list[str]) -> dict:
    """Peak kernel RSS (MiB) and wall time of each notebook at n images per class."""
    over = dict(image_size=64, base_model=str(model), data_root=str(out / f"n{n}" / "data"),
                results_root=str(out / f"n{n}" / "results"), scale="full", n_train_per_class=n, n_test_per_class=n,
                n_val_per_class=8, batch_per_class=4, train_batches=2, validate_every=1, latent_warmup_steps=20,
                ddim_steps=steps, hspace_steps=[steps], n_recon_images=n, n_edit_images=n, eval_batch_size=16,
                device="cpu", salient_strength=1.0)
    args = [a for k, v in over.items() for a in ("-p", k, json.dumps(v))]
    found = {}
    for nb in notebooks:
        t0 = time.time()
        cmd = [sys.executable, "-m", "hsep_utils.reproduce", "--preset", "toy-glasses", "--notebooks", nb, *args]
        peak_kib = int(subprocess.run([sys.executable, "-c", PEAK, *cmd], cwd=REPO, check=True, capture_output=True,
                                      text=True).stdout.split()[-1])
        found[nb] = dict(peak_rss_mib=round(peak_kib / 1024, 1), seconds=round(time.time() - t0, 1))
        print(f"n={n} notebook {nb}: {found[nb]}", flush=True)
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=64, help="images per class of the small run (the large: 4×)")
    ap.add_argument("--steps", type=int, default=5, help="DDIM steps")
    ap.add_argument("--notebooks", nargs="+", default=["00", "01", "02", "03", "04"])
    a = ap.parse_args(argv)
    out = Path(a.out)
    model = small_unet(out / "model")
    runs = {n: run(n, out, model, a.steps, a.notebooks) for n in (a.n, 4 * a.n)}
    small, large = runs[a.n], runs[4 * a.n]
    growth = {nb: round(large[nb]["peak_rss_mib"] / small[nb]["peak_rss_mib"] - 1, 3) for nb in a.notebooks}
    found = dict(n=a.n, steps=a.steps, runs={str(k): v for k, v in runs.items()}, growth=growth,
                 ru_maxrss_self_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    (out / "scale_check.json").write_text(json.dumps(found, indent=1))
    print(json.dumps(found, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
