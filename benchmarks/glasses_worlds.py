"""Which toy glasses does a 32 px base model's h carry? Per glasses style: render the base model's
pool (20 000 identities of seed 1 000 000) with that style, train a base DDPM on it, fit a toy
classifier, and run the oracle h-swap (``hsep_utils.diagnostics``) on 64 + 64 fresh identities at
20 and 50 DDIM steps. Styles: ``visor`` (the toy world's glasses, ``hsep_utils.toy.render``),
``sun`` and ``bigsun`` (round dark lenses of 1.55 / 2.0 eye radii, drawn here). The thin rings the
toy world had before (``git show 69465d8:hsep_utils/toy.py``) fail the same check (docs/experiments.md "how the toy glasses were chosen").
Needs a GPU; ``benchmarks/glasses_worlds.sh`` runs the three side by side.

    python benchmarks/glasses_worlds.py STYLE OUTDIR TRAIN_SECONDS

The number of training steps (batch 64, at most 8000) is what fits TRAIN_SECONDS at the rate of a
200-step pilot run beside the other styles; FIXED_STEPS=N in the environment sets it instead.
BASE_OPTS='{"skip_dropout": 0.25}' (JSON) passes further options to ``hsep_utils.base_ddpm.train``.
"""
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw

import hsep_utils.datasets as ds
import hsep_utils.toy as toy
from hsep_utils import base_ddpm
from hsep_utils.classifier import build_classifier, train_classifier, predict
from hsep_utils.diagnostics import oracle_hswap
from hsep_utils.diffusion import load_diffusion
from hsep_utils.splits import Split
from hsep_utils.plotting import from_uint8

VARIANT, OUT, BUDGET = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMALL = DEV == "cpu"  # no GPU: a smoke run of the script on tiny sizes
BASE_OPTS = json.loads(os.environ.get("BASE_OPTS", "{}"))  # more base_ddpm options, e.g. {"skip_dropout": 0.25}
_render = toy.render


def render_variant(f, size=32, supersample=4):
    if VARIANT == "visor" or not f.glasses:
        return _render(f, size, supersample)
    R = size * supersample
    img = Image.fromarray(_render(replace(f, glasses=0), R, 1))
    d = ImageDraw.Draw(img)
    cx, cy, w, h = f.face_cx * R, f.face_cy * R, f.face_w * R, f.face_h * R
    ey, es, er = cy - 0.08 * h, f.eye_spacing * R, 0.2 * w
    frame = np.array([(15, 15, 15), (95, 55, 25), (170, 20, 30)][f.frame_colour], float)
    lens = tuple(int(v) for v in frame * 0.35)
    fr = tuple(int(v) for v in frame)
    lw = supersample  # 1 px at the output size
    gr = {"sun": 1.55, "bigsun": 2.0}[VARIANT] * er
    for s in (-1, 1):
        ex = cx + s * es
        d.ellipse([ex - gr, ey - 0.85 * gr, ex + gr, ey + 0.85 * gr], fill=lens, outline=fr, width=lw)
        d.line([(ex + s * gr, ey - 0.2 * gr), (cx + s * 0.98 * w, ey - 0.35 * gr)], fill=fr, width=lw)
    d.line([(cx - es + gr, ey), (cx + es - gr, ey)], fill=fr, width=lw)
    return np.asarray(img.resize((size, size), Image.BOX))


toy.render = render_variant
ds.render = render_variant


def images(seed, n, **attrs):
    fs = [toy.sample_factors(seed, i, **attrs) for i in range(n)]
    arr = np.stack([render_variant(f) for f in fs])
    return pd.DataFrame([f.as_dict() for f in fs]), from_uint8(arr)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    _, pool = images(1_000_000, 256 if SMALL else 20_000)
    Image.fromarray(((pool[:64].permute(0, 2, 3, 1).reshape(8, 8, 32, 32, 3).permute(0, 2, 1, 3, 4)
                      .reshape(256, 256, 3) + 1) * 127.5).byte().numpy()).save(OUT / "pool.png")
    tp = time.time()
    if os.environ.get("FIXED_STEPS"):  # the committed model: FIXED_STEPS=6000 with style visor
        steps = int(os.environ["FIXED_STEPS"])
    elif SMALL:
        steps = 3
    else:
        base_ddpm.train(data=pool, out=str(OUT / "pilot"), device=DEV, batch_size=64, steps=200,
                        checkpoint_every=1000, n_samples=1)
        steps = int(min(8000, max(100, 200 / (time.time() - tp) * BUDGET)))
    print(VARIANT, "steps", steps, BASE_OPTS, flush=True)
    base_ddpm.train(data=pool, out=str(OUT / "model"), device=DEV, batch_size=64, steps=steps,
                    checkpoint_every=1000, n_samples=4 if SMALL else 64, **BASE_OPTS)
    t_train = time.time() - t0
    diffusion = load_diffusion(OUT / "model", DEV)
    nc = 128 if SMALL else 4000
    _, xb = images(5, nc, glasses=0)
    _, xt = images(6, nc, glasses=1)
    clf, _ = build_classifier(32)
    clf = train_classifier(clf.to(DEV), torch.cat([xb, xt]), torch.cat([torch.zeros(nc), torch.ones(nc)]),
                           progress=False)
    rows_b, tb = images(7, 256, glasses=0)
    rows_t, tt = images(8, 256, glasses=1)
    acc = torch.cat([~predict(clf, tb), predict(clf, tt)]).float().mean().item()
    found = dict(variant=VARIANT, base_opts=BASE_OPTS, steps=steps, train_s=round(t_train, 1), classifier_acc=acc)
    for n_steps in (20, 50):
        for name, rows, x, is_t in (("add", rows_b, tb, False), ("remove", rows_t, tt, True)):
            r = oracle_hswap(diffusion, Split(rows=rows, x=x), "glasses", clf, is_t, 4 if SMALL else 64, n_steps,
                             asymmetric=False)
            found[f"{name}_{n_steps}"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
            print(VARIANT, name, n_steps, found[f"{name}_{n_steps}"], flush=True)
    found["total_s"] = round(time.time() - t0, 1)
    (OUT / "found.json").write_text(json.dumps(found, indent=1))
    shutil.rmtree(OUT / "pilot", ignore_errors=True)
    (OUT / "model" / "checkpoint.pt").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
