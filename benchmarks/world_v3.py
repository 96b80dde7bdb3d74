"""A candidate toy world (renderer v3) and its screen: does a 32 px base model trained on it carry
all four attributes, and their salient sub-factors, in h?

The toy world of ``hsep_utils.toy`` (renderer 2) draws smile, age and gender with thin lines and small
shapes that the committed base model's h does not carry (oracle h-swap on 64 images at 20 steps:
smile 0.00 / 0.06 add / remove, age 0.80 / 0.03, gender 0.73 / 0.86), and only glasses have a
salient sub-factor (frame colour), which its h does not carry either (donor h-swap match 0.27, chance
1/3). What a 32 px model's h carries is large, low-frequency colour (the sunglasses band:
docs/experiments.md "how the toy glasses were chosen"), so v3 draws every attribute and
sub-factor as such:

- glasses: the same band, its lenses tinted in the frame's colour (black, blue, red) instead of
  nearly black whatever the frame;
- smile: a wide open grin (about 10 × 4 px) and flushed cheeks instead of a 6 px arc; sub-factor
  ``smile_style``: what the open mouth shows (teeth, tongue, dark);
- age: the hair turns wholly grey (sub-factor ``grey_level``: ash, silver, white) and the skin pale,
  instead of 75 % grey hair and 1 px wrinkles;
- gender: short hair, a wide jaw and a beard (sub-factor ``beard_style``: full, chin, moustache)
  against long hair falling behind the face, drawn larger than before.

Identity factors are those of renderer 2 (same draws: ``toy.sample_factors``); the sub-factors are
drawn from their own generator, so renderer 2's images do not change. Nothing in ``hsep_utils``
uses this module: the screen patches ``toy`` / ``datasets`` / ``evaluation`` while it runs (as
``glasses_worlds.py`` does), so the committed results stay renderer 2's until a world passes.

    python benchmarks/world_v3.py OUTDIR [--steps 6000] [--base-options JSON] [-n 64] [--ddim 50] [--grid-only]

It renders the base model's 20 000 training images (seed 1 000 000), trains the base DDPM on them
(``hsep_utils.base_ddpm``, the committed model's recipe; it resumes from OUTDIR/model/checkpoint.pt),
then per attribute fits a toy classifier (4000 + 4000 images of their own seed, ``--n-classifier``) and runs the oracle
h-swap (``hsep_utils.diagnostics.oracle_hswap``, with donors when adding) on n + n fresh identities,
writing OUTDIR/found.json after each attribute (a rerun skips those done). ``--grid-only`` writes
OUTDIR/world.png (rows: each attribute off / on, sub-factors cycling) and stops.

Result (2026-12-02, 2-core AMD EPYC, 63 min of base-model training, 11 min of screen;
``benchmarks/raw/world_v3/``, with the model): only gender passes; h carries where things are drawn
(long hair against short) far better than what colour they are (grey hair, lens tint), so v3 is not
the toy world's renderer (docs/experiments.md "a toy world for every attribute: renderer v3").
"""
from __future__ import annotations

import argparse
import colorsys
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw

import hsep_utils.datasets as datasets
import hsep_utils.evaluation as evaluation
import hsep_utils.toy as toy
from hsep_utils import base_ddpm
from hsep_utils.classifier import build_classifier, predict, train_classifier
from hsep_utils.diagnostics import oracle_hswap
from hsep_utils.plotting import from_uint8, save_grid
from hsep_utils.splits import Split

_LENS_FRAMES = ((25, 25, 25), (40, 80, 230), (225, 40, 40))  # frame_colour 0 black, 1 blue, 2 red; lenses 0.6 of it
_MOUTH_INSIDE = ((245, 245, 240), (225, 95, 115), (70, 15, 25))  # smile_style 0 teeth, 1 tongue, 2 dark
_GREYS = ((120, 120, 125), (180, 180, 186), (238, 238, 240))  # grey_level 0 ash, 1 silver, 2 white
BEARD_STYLES = ("full", "chin", "moustache")
SUB_FACTORS = {"glasses": {"frame_colour": range(3)}, "smile": {"smile_style": range(3)},
               "age": {"grey_level": range(3)}, "gender": {"beard_style": range(3)}}


@dataclass(frozen=True)
class FactorsV3(toy.ToyFactors):
    """Renderer 2's factors plus one salient sub-factor per attribute (``SUB_FACTORS``)."""

    smile_style: int = 0
    grey_level: int = 0
    beard_style: int = 0


def sample_factors(seed: int, index: int, **attributes: int) -> FactorsV3:
    """Renderer 2's draws for (seed, index), and the sub-factors from a generator of their own."""
    base = toy.sample_factors(seed, index, **attributes)
    u = np.random.default_rng([seed, index, 3]).random(3)
    return FactorsV3(**base.as_dict(), smile_style=int(u[0] * 3), grey_level=int(u[1] * 3), beard_style=int(u[2] * 3))


def _rgb(c) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.round(np.asarray(c, float)), 0, 255))


def _mix(a, b, w: float) -> np.ndarray:
    return (1 - w) * np.asarray(a, float) + w * np.asarray(b, float)


def attribute_box(f, attribute: str, side: float) -> tuple[float, float, float, float]:
    """Where a local attribute is drawn (x0, y0, x1, y1) in pixels of an image ``side`` wide."""
    cx, cy, w, h = (v * side for v in (f.face_cx, f.face_cy, f.face_w, f.face_h))
    if attribute == "glasses":
        ey, er = cy - 0.08 * h, 0.2 * w
        return (cx - 1.02 * w, ey - 1.25 * er, cx + 1.02 * w, ey + 1.25 * er)
    if attribute == "smile":  # the grin and both cheeks
        my = cy + 0.45 * h
        return (cx - 0.85 * w, my - 0.42 * h, cx + 0.85 * w, my + 0.34 * h)
    raise ValueError(f"{attribute!r} is a global attribute: it has no region")


def render(f, size: int = 32, supersample: int = 4) -> np.ndarray:
    """Renderer v3 (see the module docstring): an RGB uint8 array (size, size, 3)."""
    R = size * supersample
    P = lambda v: v * R  # noqa: E731
    img = Image.new("RGB", (R, R))
    d = ImageDraw.Draw(img)
    toy.draw_background(d, f, R)

    skin = _mix(toy._SKIN_LIGHT, toy._SKIN_DARK, f.skin_tone)
    hair = toy._HAIR_COLOURS[f.hair_colour]
    if f.age:  # global: wholly grey hair (and beard, brows), pale skin
        hair = np.array(_GREYS[f.grey_level], float)
        skin = _mix(skin, toy._PALE, 0.45)
    cx, cy, w, h = P(f.face_cx), P(f.face_cy), P(f.face_w), P(f.face_h)
    top = cy - h
    shirt = np.array(colorsys.hsv_to_rgb(f.shirt_hue, 0.6, 0.7)) * 255
    d.ellipse([cx - 1.9 * w, cy + 0.8 * h, cx + 1.9 * w, cy + 2.6 * h], fill=_rgb(shirt))
    if not f.gender:  # long hair falling behind the face to the shoulders
        d.rounded_rectangle([cx - 1.35 * w, top - 0.12 * h, cx + 1.35 * w, cy + 1.3 * h], radius=int(0.6 * w),
                            fill=_rgb(hair))
    d.rectangle([cx - 0.35 * w, cy + 0.6 * h, cx + 0.35 * w, cy + 1.2 * h], fill=_rgb(skin * 0.9))
    d.ellipse([cx - w, cy - h, cx + w, cy + h], fill=_rgb(skin))
    my = cy + 0.45 * h
    if f.gender:  # wide jaw and a beard of the hair's colour
        d.ellipse([cx - 1.1 * w, cy - 0.1 * h, cx + 1.1 * w, cy + 0.98 * h], fill=_rgb(skin))
        beard = _rgb(_mix(skin, hair, 0.7))
        style = BEARD_STYLES[f.beard_style]
        if style == "full":
            d.chord([cx - 1.05 * w, cy - 0.4 * h, cx + 1.05 * w, cy + 1.0 * h], 10, 170, fill=beard)
        elif style == "chin":
            d.chord([cx - 0.5 * w, my - 0.1 * h, cx + 0.5 * w, cy + 1.02 * h], 0, 180, fill=beard)
        d.rounded_rectangle([cx - 0.55 * w, my - 0.2 * h, cx + 0.55 * w, my - 0.04 * h], radius=int(0.05 * h),
                            fill=beard)  # every beard style has a moustache
    toy.draw_hair(d, f, hair, R)
    toy.draw_eyes_and_nose(d, f, skin, hair, R)

    lip = _rgb(_mix(skin, (170, 40, 50), 0.6))
    if f.smile:  # flushed cheeks and a wide open grin showing the smile style
        blush = _rgb(_mix(skin, (235, 80, 95), 0.5))
        for s in (-1, 1):
            bx, by, br = cx + s * 0.62 * w, my - 0.22 * h, 0.2 * w
            d.ellipse([bx - br, by - br, bx + br, by + br], fill=blush)
        d.chord([cx - 0.62 * w, my - 0.5 * h, cx + 0.62 * w, my + 0.32 * h], 0, 180, fill=lip)
        d.chord([cx - 0.5 * w, my - 0.4 * h, cx + 0.5 * w, my + 0.24 * h], 0, 180,
                fill=_MOUTH_INSIDE[f.smile_style])
    else:
        d.line([(cx - 0.3 * w, my), (cx + 0.3 * w, my)], fill=lip, width=max(2, int(0.07 * h)))

    if f.glasses:
        frame, er = _LENS_FRAMES[f.frame_colour], 0.2 * w
        d.rounded_rectangle(attribute_box(f, "glasses", R), radius=int(0.9 * er), fill=_rgb(np.array(frame) * 0.6),
                            outline=frame, width=supersample)
    return np.asarray(img.resize((size, size), Image.BOX))


Factors = FactorsV3


def install(world=None) -> None:
    """Make ``hsep_utils``' toy machinery (counterfactuals, donors, regions) use ``world``: a module
    with ``Factors``, ``sample_factors``, ``render``, ``attribute_box`` and ``SUB_FACTORS`` (this one
    by default; ``world_v5.py`` screens its own)."""
    world = world or sys.modules[__name__]
    toy.SHOWN_ONLY_WITH.clear()
    toy.SHOWN_ONLY_WITH.update(world.SUB_FACTORS)
    toy._attribute_box = world.attribute_box
    for module in (toy, datasets):
        module.render = world.render
    for module in (datasets, evaluation):
        module.ToyFactors = world.Factors


def images(world, seed: int, n: int, **attributes: int) -> tuple[pd.DataFrame, torch.Tensor]:
    fs = [world.sample_factors(seed, i, **attributes) for i in range(n)]
    return pd.DataFrame([f.as_dict() for f in fs]), from_uint8(np.stack([world.render(f) for f in fs]))


def by_sub_factor(world, attribute: str, rows: pd.DataFrame, donor_rows: pd.DataFrame, found: dict) -> dict:
    """Per value of the attribute's sub-factor: removing, the oracle SR of the inputs showing it;
    adding, the donor h-swap's oracle SR (added, and with the donor's sub-factor) of donors showing it."""
    (sub,) = world.SUB_FACTORS[attribute]
    key, table = ("oracle_failures", rows) if "donor_hswap_failures" not in found else ("donor_hswap_failures", donor_rows)
    values = table[sub].to_numpy()[:found["n"]]
    ok = np.ones(len(values), bool)
    ok[found[key]] = False
    return {f"{sub}={v}": dict(n=int((values == v).sum()), sr=round(float(ok[values == v].mean()), 3))
            for v in sorted(set(values))}


def world_grid(world, path: Path, n: int = 8) -> None:
    """Rows: each attribute off, then on (identities 0..n-1 of seed 42, sub-factors cycling)."""
    rows = []
    for a, (sub,) in ((a, world.SUB_FACTORS[a]) for a in toy.ATTRIBUTES):
        fs = [world.sample_factors(42, i) for i in range(n)]
        for value in (0, 1):
            rows.append(from_uint8(np.stack([world.render(replace(f, **{a: value, sub: i % 3}))
                                             for i, f in enumerate(fs)])))
    save_grid(rows, path, scale=4)


def main(argv=None, world=None) -> None:
    """The screen (the module docstring) of ``world``, this module by default."""
    world = world or sys.modules[__name__]
    ap = argparse.ArgumentParser(description=world.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=6000, help="base-model training steps of 64 images")
    ap.add_argument("--base-options", type=json.loads, default={}, metavar="JSON",
                    help='other hsep_utils.base_ddpm options, e.g. \'{"block_out_channels": [32, 64, 128]}\'')
    ap.add_argument("-n", type=int, default=64, help="images per direction in the oracle h-swap")
    ap.add_argument("--ddim", type=int, default=50, help="DDIM steps of the oracle h-swap")
    ap.add_argument("--n-classifier", type=int, default=4000, help="training images per class of each classifier")
    ap.add_argument("--model", type=Path, help="screen this exported base model instead of training one (e.g. "
                    "benchmarks/raw/world_v3/model, the screen's of 2026-12-02)")
    ap.add_argument("--grid-only", action="store_true")
    a = ap.parse_args(argv)
    install(world)
    a.out.mkdir(parents=True, exist_ok=True)
    world_grid(world, a.out / "world.png")
    if a.grid_only:
        return
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()
    if a.model is None:
        _, pool = images(world, 1_000_000, 20_000)
        base_ddpm.train(data=pool, out=str(a.out / "model"), device=dev, steps=a.steps, **a.base_options)
    from hsep_utils.diffusion import load_diffusion

    diffusion = load_diffusion(a.model or a.out / "model", dev)
    found_path = a.out / "found.json"
    found = json.loads(found_path.read_text()) if found_path.exists() else {}
    found.setdefault("base_model", dict(model=str(a.model)) if a.model else dict(steps=a.steps,
                                                                                train_s=round(time.time() - t0, 1)))
    for k, attribute in enumerate(toy.ATTRIBUTES):
        if attribute in found:
            continue
        t1 = time.time()
        seeds = 5_000 + 10 * k
        nc = a.n_classifier
        _, xb = images(world, seeds, nc, **{attribute: 0})
        _, xt = images(world, seeds + 1, nc, **{attribute: 1})
        clf = train_classifier(build_classifier(32)[0].to(dev), torch.cat([xb, xt]),
                               torch.cat([torch.zeros(nc), torch.ones(nc)]), progress=False)
        rows_b, vb = images(world, seeds + 2, a.n, **{attribute: 0})
        rows_t, vt = images(world, seeds + 3, a.n, **{attribute: 1})
        acc = torch.cat([~predict(clf, vb), predict(clf, vt)]).float().mean().item()
        entry = dict(classifier_acc=round(acc, 3), ddim_steps=a.ddim)
        for name, rows, x, is_t in (("add", rows_b, vb, False), ("remove", rows_t, vt, True)):
            donors = Split(rows=rows_t, x=vt) if name == "add" else None
            r = oracle_hswap(diffusion, Split(rows=rows, x=x), attribute, clf, is_t, a.n, a.ddim, asymmetric=False,
                             failures=a.out / f"failures_{attribute}_{name}.png", donors=donors)
            entry[name] = {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()
                           if not k.endswith("_failures")}
            entry[name]["by_sub_factor"] = by_sub_factor(world, attribute, rows, rows_t, r)
            print(attribute, name, json.dumps(entry[name]), flush=True)
        entry["seconds"] = round(time.time() - t1, 1)
        found[attribute] = entry
        found_path.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
