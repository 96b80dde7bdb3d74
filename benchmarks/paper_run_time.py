"""How long the paper's run takes: notebooks 00–05 of a real preset at its full scale, computed from
measured per-image costs. Nothing here runs the U-Net: the costs are the H200 run of
``benchmarks/bench.py`` (``raw/gpu_bf16.json``: celebahq-256 layout, 113.67 M parameters, random
weights, bf16 autocast; the P2 model of the ffhq presets has 93.56 M, so read these as upper
bounds), the asymmetric step's extra decoder half as a share of a forward from the CPU run
``raw/cpu_asymmetric.json`` (the H200 run predates the asymmetric step), the preset's own sizes
(``presets.resolve(preset, {"scale": "full"})``), and for notebook 00 a 1024 px PNG decoded and
resized on the machine that runs this script.

    python benchmarks/paper_run_time.py --preset ffhq-glasses [--gpus 8] [--cores 16]

Prints a Markdown table (the README's) and the formulas. Several GPUs (accelerate) are computed
as the ideal ÷ N: every per-image cost is shared, nothing else is measured.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hsep_utils.ablation import ABLATION_GRID  # noqa: E402
from hsep_utils.diffusion import ddim_timesteps  # noqa: E402
from hsep_utils.presets import resolve  # noqa: E402


def shape_256(path: Path) -> dict:
    return next(r for r in json.loads(path.read_text())["results"] if r["shape"] == "celebahq256")


def png_seconds(reps: int = 10) -> tuple[float, int]:
    """Decode a 1024 px PNG (smooth content with noise, ~ a photo's size on disk) and resize it to
    256 px, as notebook 00's splitters do: (median seconds on this machine, file bytes)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1024, 0:1024]
    img = np.stack([(xx + yy) / 8, xx / 4, yy / 4], -1) + rng.normal(0, 12, (1024, 1024, 3))
    buf = io.BytesIO()
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(buf, "PNG")
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        Image.open(io.BytesIO(buf.getvalue())).convert("RGB").resize((256, 256), Image.LANCZOS)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), buf.tell()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="ffhq-glasses")
    ap.add_argument("--gpus", type=int, default=8, help="the accelerate column: N GPUs, ideal ÷ N")
    ap.add_argument("--cores", type=int, default=16, help="CPU cores decoding PNGs in notebook 00 (the H200 box: 16)")
    a = ap.parse_args(argv)
    p = resolve(a.preset, {"scale": "full"})
    gpu, cpu = shape_256(REPO / "benchmarks/raw/gpu_bf16.json"), shape_256(REPO / "benchmarks/raw/cpu_asymmetric.json")
    s, mem = gpu["per_image_s"], gpu["memory_bytes"]
    F, T_sym, I, E_sym = s["forward"], s["train_step"], s["inversion_step"], s["swap_edit_step"]
    extra = cpu["ratio"]["train_step"] - cpu["ratio"]["train_step_symmetric"]  # the asymmetric step's decoder half
    extra_edit = cpu["ratio"]["swap_edit_step"] - cpu["ratio"]["swap_edit_step_symmetric"]
    T = T_sym + extra * F  # asymmetric train step, per image per step
    E_add = E_sym + extra_edit * F  # asymmetric swap, per edited image per step (its donor included)
    E_one = E_sym - F + extra_edit * F  # an edit without a donor (removal, reconstruction through the net)
    n_tr, n_te, n_val, steps = p["n_train_per_class"], p["n_test_per_class"], p["n_val_per_class"], p["ddim_steps"]
    bpc, n_edit = p["batch_per_class"], p["n_edit_images"]
    batches = n_tr // bpc if p["train_batches"] is None else p["train_batches"]
    n_validations = -(-batches // p["validate_every"])
    recon = sum(2 * k for k in p["hspace_steps"])  # invert + generate at each step count
    png, png_bytes = png_seconds()
    grid = list(ABLATION_GRID.values())
    n_configs = int(np.prod([len(v) for v in grid]))
    trained = lambda t_edit: sum(1 for t in ddim_timesteps(steps, 1000) if t >= t_edit)  # noqa: E731
    ablation = sum(p["ablation_batches"] * 2 * bpc * trained(t) * T + p["n_ablation_images"] * steps * (E_add + E_one)
                   for t in ABLATION_GRID["t_edit"]) * n_configs / len(ABLATION_GRID["t_edit"])
    at_eval = lambda phase: (mem[phase]["peak"] + mem[phase]["above"] * (p["eval_batch_size"] / gpu["batch"] - 1)) / 2**30  # noqa: E731
    validation = n_validations * n_val * steps * (E_add + E_one + 2 * E_one)
    rows = [
        ("00 split", 2 * (n_tr + n_te) * png / a.cores, "CPU",
         f"{2 * (n_tr + n_te)} PNGs × {png * 1e3:.0f} ms (1024 px → 256, measured here) / {a.cores} cores"),
        ("01 reconstruction steps", p["n_recon_images"] * recon * F, f"{at_eval('inversion_step'):.0f} GiB",
         f"{p['n_recon_images']} images × {recon} U-Net passes (steps {p['hspace_steps']}, invert + generate) × F"),
        ("02 train", 2 * n_tr * (steps - 1) * I + batches * 2 * bpc * steps * T + validation,
         f"{mem['train_step']['peak'] / 2**30:.1f} GiB",
         f"inversions {2 * n_tr} × {steps - 1} × I + {batches} batches × {2 * bpc} images × {steps} steps × T + "
         f"{n_validations} validations × {n_val} pairs × {steps} × (E_add + 3 E_one)"),
        ("03 grids", 0.0, "—", "a few images: under a minute"),
        ("04 tables", 2 * n_te * (steps - 1) * I + n_edit * steps * (E_add + E_one), f"{at_eval('swap_edit_step'):.0f} GiB",
         f"inversions {2 * n_te} × {steps - 1} × I + {n_edit} × {steps} × (E_add + E_one); metrics not counted"),
        ("05 ablation", ablation, f"{mem['train_step']['peak'] / 2**30:.1f} GiB",
         f"{n_configs} configurations × {p['ablation_batches']} batches × {2 * bpc} images × steps ≥ t_edit × T "
         f"+ {p['n_ablation_images']} × {steps} × (E_add + E_one) each"),
    ]
    hours = lambda x: f"{x / 3600:.1f} h" if x >= 3600 else (f"{x / 60:.0f} min" if x >= 60 else "< 1 min")  # noqa: E731
    print(f"| notebook ({a.preset}, full) | one H200 | {a.gpus} × H200 (ideal) | GPU peak | label |")
    print("|---|---:|---:|---:|---|")
    for name, sec, peak, _ in rows:
        label = {"00": "time computed from a CPU measurement", "02": "time computed, peak measured (batch 16)",
                 "05": "time computed, peak measured (batch 16)"}.get(name[:2], "computed")
        multi = hours(sec / a.gpus) if name[:2] not in ("00", "03") else hours(sec)
        print(f"| {name} | {hours(sec)} | {multi} | {peak} | {label} |")
    print()
    print(f"Per image per step, H200 bf16 ({gpu['model']}, {gpu['params_M']} M): F = forward {F * 1e3:.2f} ms, "
          f"I = inversion {I * 1e3:.2f} ms, T = asymmetric train step {T * 1e3:.2f} ms "
          f"(symmetric {T_sym * 1e3:.2f} + {extra:.2f} F, the CPU run's extra decoder half), "
          f"E_add = asymmetric swap {E_add * 1e3:.2f} ms (symmetric {E_sym * 1e3:.2f} + {extra_edit:.2f} F), "
          f"E_one = an edit without donor {E_one * 1e3:.2f} ms (E_sym − F + {extra_edit:.2f} F). "
          f"PNG: {png_bytes / 2**20:.1f} MiB test file. GPU peaks: the bench's at batch 16 (train step, measured) and "
          f"its inversion / swap peaks with the part above the weights scaled to eval_batch_size {p['eval_batch_size']} "
          f"(computed).")
    for name, sec, _, formula in rows:
        print(f"- {name}: {formula} = {sec:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
