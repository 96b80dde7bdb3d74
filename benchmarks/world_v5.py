"""A candidate toy world (renderer v5) for issue 29, screened as ``world_v3.py`` screens v3.

Renderer v3 drew every attribute as large colour and found that a 32 px base model's h carries
*where* things are drawn, not *what colour* they are. Renderer v4 (this file at commit 0fbc898) drew
every attribute and sub-factor as layout: age (the hair recedes, large ears) and gender then passed
the oracle h-swap at 50 DDIM steps, and sub-factors transferred well above chance, but glasses (a
band, tall goggles or round lenses) and adding a smile failed, the goggles worst and the smallest
open mouths worst (docs/experiments.md "renderer v4"). So v5 keeps v4 and changes two things:

- glasses: every lens shape is renderer 2's near-black wraparound band (which passes with renderer
  2), sub-factor ``lens_shape``: the band, a deep band up to the brows, or a band whose ends run
  over the ears to the hair;
- smile: every open mouth is larger (v4's largest, the tall laugh, was added most often).

Identities are renderer 2's draws (``toy.sample_factors``), sub-factors come from their own
generator. Nothing in ``hsep_utils`` uses this module.

    python benchmarks/world_v5.py OUTDIR [--steps 6000] [-n 64] [--ddim 50] [--grid-only] [--model DIR]

(the options and outputs of ``world_v3.py``).
"""
from __future__ import annotations

import colorsys
import sys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

import hsep_utils.toy as toy
import world_v3
from world_v3 import _mix, _rgb

SUB_FACTORS = {"glasses": {"lens_shape": range(3)}, "smile": {"mouth_shape": range(3)},
               "age": {"bald_pattern": range(3)}, "gender": {"beard_style": range(3)}}
_LENS, _FRAME = (8, 8, 10), (20, 20, 22)
_MOUTH = (55, 12, 22)


@dataclass(frozen=True)
class Factors(toy.ToyFactors):
    """Renderer 2's factors plus one salient sub-factor per attribute (``SUB_FACTORS``); renderer 2's
    ``frame_colour`` is not drawn (the frames are black)."""

    lens_shape: int = 0
    mouth_shape: int = 0
    bald_pattern: int = 0
    beard_style: int = 0


def sample_factors(seed: int, index: int, **attributes: int) -> Factors:
    """Renderer 2's draws for (seed, index), and the sub-factors from a generator of their own."""
    base = toy.sample_factors(seed, index, **attributes)
    u = np.random.default_rng([seed, index, 4]).random(4)
    return Factors(**base.as_dict(), **{name: int(v * 3) for name, v in
                                        zip(("lens_shape", "mouth_shape", "bald_pattern", "beard_style"), u)})


def attribute_box(f, attribute: str, side: float) -> tuple[float, float, float, float]:
    """Where a local attribute is drawn (x0, y0, x1, y1) in pixels of an image ``side`` wide, whatever
    its sub-factor."""
    cx, cy, w, h = (v * side for v in (f.face_cx, f.face_cy, f.face_w, f.face_h))
    if attribute == "glasses":
        ey, er = cy - 0.08 * h, 0.2 * w
        return (cx - 1.3 * w, ey - 2.0 * er, cx + 1.3 * w, ey + 1.6 * er)
    if attribute == "smile":  # the open mouth and the dropped jaw (a wide jaw's outline moves from 0.1 h above cy)
        return (cx - 1.12 * w, cy - 0.12 * h, cx + 1.12 * w, cy + 1.2 * h)
    raise ValueError(f"{attribute!r} is a global attribute: it has no region")


def _bald_mask(f, R: int) -> Image.Image:
    """Where an aged head has lost its hair (255), by ``bald_pattern``: temples, middle, all."""
    cx, cy, w, h = (v * R for v in (f.face_cx, f.face_cy, f.face_w, f.face_h))
    top = cy - h
    m = Image.new("L", (R, R), 0)
    d = ImageDraw.Draw(m)
    if f.bald_pattern == 0:  # bald temples: an M-shaped hairline, a tuft left in the middle
        for s in (-1, 1):
            x = cx + s * 0.62 * w
            d.ellipse([x - 0.48 * w, top - 0.3 * h, x + 0.48 * w, cy - 0.3 * h], fill=255)
    elif f.bald_pattern == 1:  # bald middle: hair left only over the ears
        d.rectangle([cx - 0.62 * w, top - 0.3 * h, cx + 0.62 * w, cy - 0.3 * h], fill=255)
    else:  # fully bald above the brows
        d.rectangle([cx - 1.5 * w, top - 0.3 * h, cx + 1.5 * w, cy - 0.3 * h], fill=255)
    return m


def render(f, size: int = 32, supersample: int = 4) -> np.ndarray:
    """Renderer v4 (see the module docstring): an RGB uint8 array (size, size, 3)."""
    R = size * supersample
    img = Image.new("RGB", (R, R))
    d = ImageDraw.Draw(img)
    toy.draw_background(d, f, R)
    background = img.copy()  # shows again where an aged head has lost its hair

    skin = _mix(toy._SKIN_LIGHT, toy._SKIN_DARK, f.skin_tone)
    hair = toy._HAIR_COLOURS[f.hair_colour]
    cx, cy, w, h = (v * R for v in (f.face_cx, f.face_cy, f.face_w, f.face_h))
    top, ey, my = cy - h, cy - 0.08 * h, cy + 0.45 * h
    shirt = np.array(colorsys.hsv_to_rgb(f.shirt_hue, 0.6, 0.7)) * 255
    d.ellipse([cx - 1.9 * w, cy + 0.8 * h, cx + 1.9 * w, cy + 2.6 * h], fill=_rgb(shirt))
    if not f.gender:  # long hair falling behind the face to the shoulders
        d.rounded_rectangle([cx - 1.35 * w, top - 0.12 * h, cx + 1.35 * w, cy + 1.3 * h], radius=int(0.6 * w),
                            fill=_rgb(hair))
    if f.age:
        img.paste(background, mask=_bald_mask(f, R))
        for s in (-1, 1):  # large ears
            x = cx + s * 1.0 * w
            d.ellipse([x - 0.3 * w, ey - 0.25 * h, x + 0.3 * w, ey + 0.3 * h], fill=_rgb(skin * 0.92))
    d.rectangle([cx - 0.35 * w, cy + 0.6 * h, cx + 0.35 * w, cy + 1.2 * h], fill=_rgb(skin * 0.9))
    chin = cy + (1.18 if f.smile else 1.0) * h
    d.ellipse([cx - w, cy - h, cx + w, cy + h], fill=_rgb(skin))
    if f.smile:  # an open mouth drops the jaw: the face's lower half only, so the smile stays in its box
        d.chord([cx - w, cy - (chin - cy), cx + w, chin], 0, 180, fill=_rgb(skin))
    if f.gender:  # a wide jaw, and the beard style
        d.ellipse([cx - 1.1 * w, cy - 0.1 * h, cx + 1.1 * w, chin - 0.02 * h], fill=_rgb(skin))
        beard = _rgb(_mix(skin, hair, 0.85))
        if f.beard_style == 0:  # long: hanging over the neck and chest
            d.chord([cx - 1.05 * w, cy - 0.4 * h, cx + 1.05 * w, chin], 10, 170, fill=beard)
            d.polygon([(cx - 0.75 * w, cy + 0.7 * h), (cx + 0.75 * w, cy + 0.7 * h), (cx + 0.3 * w, cy + 1.65 * h),
                       (cx - 0.3 * w, cy + 1.65 * h)], fill=beard)
        elif f.beard_style == 1:  # short full beard
            d.chord([cx - 1.05 * w, cy - 0.4 * h, cx + 1.05 * w, chin], 10, 170, fill=beard)
    hair_layer = Image.new("RGB", (R, R))
    toy.draw_hair(ImageDraw.Draw(hair_layer), f, np.array([255.0, 255, 255]), R)
    hair_mask = hair_layer.convert("L")
    if f.age:
        hair_mask = Image.fromarray(np.minimum(np.asarray(hair_mask), 255 - np.asarray(_bald_mask(f, R))))
    img.paste(_rgb(hair), mask=hair_mask)
    toy.draw_eyes_and_nose(d, f, skin, hair, R)

    lip = _rgb(_mix(skin, (170, 40, 50), 0.6))
    if f.smile:  # the open mouth, by mouth shape
        box = {0: [cx - 0.88 * w, my - 0.22 * h, cx + 0.88 * w, my + 0.42 * h],  # wide grin
               1: [cx - 0.52 * w, my - 0.26 * h, cx + 0.52 * w, my + 0.68 * h],  # tall open laugh
               2: [cx - 0.15 * w, my - 0.32 * h, cx + 0.9 * w, my + 0.45 * h]}[f.mouth_shape]  # pulled to one side
        d.ellipse(box, fill=_MOUTH, outline=lip, width=supersample)
    else:
        d.line([(cx - 0.3 * w, my), (cx + 0.3 * w, my)], fill=lip, width=max(2, int(0.07 * h)))

    if f.glasses:  # a near-black band in a black frame, by lens shape
        er = 0.2 * w
        x0, y0, x1, y1 = attribute_box(f, "glasses", R)
        band = {0: [cx - 1.02 * w, ey - 1.25 * er, cx + 1.02 * w, ey + 1.25 * er],  # renderer 2's band
                1: [cx - 1.02 * w, y0, cx + 1.02 * w, y1],  # deep: up to the brows
                2: [x0, ey - 1.25 * er, x1, ey + 1.25 * er]}[f.lens_shape]  # ends over the ears
        d.rounded_rectangle(band, radius=int(0.9 * er), fill=_LENS, outline=_FRAME, width=supersample)
    return np.asarray(img.resize((size, size), Image.BOX))


if __name__ == "__main__":
    world_v3.main(world=sys.modules[__name__])
