"""A procedurally generated face-like world whose generating factors are known.

Every image is a pure function of (seed, index) for its identity factors plus four binary
attributes (glasses, smile, age, gender). Re-rendering the same identity with one attribute
flipped gives the exact counterfactual, which no real dataset provides: edits can be scored
against ground truth.

Rendering happens at ``supersample`` × the output size with PIL and is box-downsampled, so
edges are smooth at 32 px.
"""
from __future__ import annotations

import colorsys
import itertools
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from PIL import Image, ImageDraw

RENDERER_VERSION = 2
"""Recorded in each toy dataset.json; raise it whenever ``render`` draws anything differently
(2: glasses are wraparound sunglasses instead of thin rings)."""
ATTRIBUTES = ("glasses", "smile", "age", "gender")
"""Binary attributes. glasses/smile are local (eye / mouth region), age/gender are global."""

_HAIR_COLOURS = np.array([[30, 25, 22], [90, 55, 30], [200, 160, 90], [150, 60, 30], [60, 40, 30]], float)
_EYE_COLOURS = np.array([[60, 100, 190], [100, 60, 30], [60, 140, 70], [110, 110, 120]], float)
_SKIN_LIGHT, _SKIN_DARK = np.array([245, 210, 185], float), np.array([120, 75, 50], float)
_GREY_HAIR, _PALE = np.array([200, 200, 205], float), np.array([240, 228, 222], float)
_FRAME_COLOURS = ((15, 15, 15), (95, 55, 25), (170, 20, 30))  # glasses frame: black, brown, red
SHOWN_ONLY_WITH = {"glasses": {"frame_colour": range(len(_FRAME_COLOURS))}}
"""Factors an image shows only while an attribute is on, with their values: a face without glasses
has a frame colour that no pixel of it shows."""


@dataclass(frozen=True)
class ToyFactors:
    """All generating factors of one toy image (coordinates are fractions of the image side)."""

    identity: int
    bg_hue: float
    bg_value: float
    bg_texture: int  # 0 flat, 1 vertical gradient, 2 diagonal stripes
    face_cx: float
    face_cy: float
    face_w: float  # half-width
    face_h: float  # half-height
    skin_tone: float  # 0 light .. 1 dark
    hair_colour: int
    hair_style: int  # 0 straight fringe, 1 side part, 2 curly
    eye_spacing: float  # half the distance between the eyes
    eye_colour: int
    shirt_hue: float
    frame_colour: int  # glasses frame: 0 black, 1 brown, 2 red
    glasses: int = 0
    smile: int = 0
    age: int = 0
    gender: int = 0

    def flipped(self, attribute: str) -> "ToyFactors":
        """The counterfactual: same identity, ``attribute`` flipped."""
        if attribute not in ATTRIBUTES:
            raise ValueError(f"unknown attribute {attribute!r}; known: {', '.join(ATTRIBUTES)}")
        return replace(self, **{attribute: 1 - getattr(self, attribute)})

    def counterfactuals(self, attribute: str) -> list["ToyFactors"]:
        """Every counterfactual this image allows, ``flipped`` first: turning an attribute on also
        chooses the factors only it shows (``SHOWN_ONLY_WITH``), which the image does not fix — a
        face given glasses may rightly get any frame colour, whatever its unseen factor says."""
        first = self.flipped(attribute)
        hidden = SHOWN_ONLY_WITH.get(attribute, {}) if getattr(first, attribute) else {}
        choices = [dict(zip(hidden, values)) for values in itertools.product(*hidden.values())]
        return [first] + [c for c in (replace(first, **v) for v in choices) if c != first]

    def with_salient_of(self, donor: "ToyFactors", attribute: str) -> "ToyFactors":
        """The counterfactual a swap from ``donor`` should give: ``attribute`` flipped, and the factors
        only it shows (``SHOWN_ONLY_WITH``: the glasses' frame colour) taken from the donor."""
        first = self.flipped(attribute)
        hidden = SHOWN_ONLY_WITH.get(attribute, {}) if getattr(first, attribute) else {}
        return replace(first, **{k: getattr(donor, k) for k in hidden})

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_mapping(cls, row) -> "ToyFactors":
        """Factors from a manifest row (or any mapping holding every field)."""
        cast = {"int": int, "float": float}
        return cls(**{f.name: cast[f.type](row[f.name]) for f in fields(cls)})


def sample_factors(seed: int, index: int, **attributes: int) -> ToyFactors:
    """Identity factors drawn from a generator seeded by (seed, index); attributes are
    independent fair coins unless given (e.g. ``glasses=1``)."""
    rng = np.random.default_rng([seed, index])
    u = rng.random(20)
    drawn = {a: int(u[16 + i] < 0.5) for i, a in enumerate(ATTRIBUTES)}
    for name, value in attributes.items():
        if name not in ATTRIBUTES:
            raise ValueError(f"unknown attribute {name!r}; known: {', '.join(ATTRIBUTES)}")
        drawn[name] = int(value)
    return ToyFactors(
        identity=int(index),
        bg_hue=float(u[0]),
        bg_value=float(0.45 + 0.45 * u[1]),
        bg_texture=int(u[2] * 3),
        face_cx=float(0.5 + 0.06 * (u[3] - 0.5)),
        face_cy=float(0.52 + 0.06 * (u[4] - 0.5)),
        face_w=float(0.23 + 0.05 * u[5]),
        face_h=float(0.29 + 0.04 * u[6]),
        skin_tone=float(u[7]),
        hair_colour=int(u[8] * len(_HAIR_COLOURS)),
        hair_style=int(u[9] * 3),
        eye_spacing=float(0.085 + 0.03 * u[10]),
        eye_colour=int(u[11] * len(_EYE_COLOURS)),
        shirt_hue=float(u[12]),
        frame_colour=int(u[13] * len(_FRAME_COLOURS)),
        **drawn,
    )


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.round(c), 0, 255))


def _mix(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    return (1 - w) * a + w * b


def render(f: ToyFactors, size: int = 32, supersample: int = 4) -> np.ndarray:
    """Render factors to an RGB uint8 array of shape (size, size, 3)."""
    R = size * supersample
    P = lambda v: v * R  # noqa: E731  fraction of the side -> pixels at render resolution
    img = Image.new("RGB", (R, R))
    d = ImageDraw.Draw(img)

    draw_background(d, f, R)

    skin = _mix(_SKIN_LIGHT, _SKIN_DARK, f.skin_tone)
    hair = _HAIR_COLOURS[f.hair_colour]
    if f.age:  # global: grey hair, paler skin
        hair = _mix(hair, _GREY_HAIR, 0.75)
        skin = _mix(skin, _PALE, 0.35)
    cx, cy, w, h = P(f.face_cx), P(f.face_cy), P(f.face_w), P(f.face_h)
    top = cy - h

    # shirt / shoulders
    shirt = np.array(colorsys.hsv_to_rgb(f.shirt_hue, 0.6, 0.7)) * 255
    d.ellipse([cx - 1.9 * w, cy + 0.8 * h, cx + 1.9 * w, cy + 2.6 * h], fill=_rgb(shirt))
    # gender-like (global): long hair falling behind the face vs short hair, wide jaw and beard
    if not f.gender:
        d.rounded_rectangle([cx - 1.25 * w, top - 0.1 * h, cx + 1.25 * w, cy + 1.1 * h],
                            radius=int(0.6 * w), fill=_rgb(hair))
    d.rectangle([cx - 0.35 * w, cy + 0.6 * h, cx + 0.35 * w, cy + 1.2 * h], fill=_rgb(skin * 0.9))  # neck
    d.ellipse([cx - w, cy - h, cx + w, cy + h], fill=_rgb(skin))
    if f.gender:
        d.ellipse([cx - 1.08 * w, cy - 0.1 * h, cx + 1.08 * w, cy + 0.98 * h], fill=_rgb(skin))
        d.chord([cx - 1.0 * w, cy - 0.35 * h, cx + 1.0 * w, cy + 1.0 * h], 20, 160,
                fill=_rgb(_mix(skin, hair, 0.45)))

    draw_hair(d, f, hair, R)

    if f.age:  # wrinkle lines on the forehead and at the eye corners
        line = _rgb(skin * 0.72)
        lw = max(1, int(0.03 * w))
        for k in range(2):
            y = cy - 0.45 * h + k * 0.09 * h
            d.arc([cx - 0.5 * w, y - 0.05 * h, cx + 0.5 * w, y + 0.1 * h], 200, 340, fill=line, width=lw)
        for s in (-1, 1):
            x = cx + s * (P(f.eye_spacing) + 0.42 * w)
            d.line([(x, cy - 0.12 * h), (x + s * 0.12 * w, cy - 0.2 * h)], fill=line, width=lw)
            d.line([(x, cy - 0.02 * h), (x + s * 0.12 * w, cy + 0.02 * h)], fill=line, width=lw)

    draw_eyes_and_nose(d, f, skin, hair, R)

    # mouth (local): smile = open upward arc with teeth, neutral = closed straight line
    my, mw = cy + 0.45 * h, 0.38 * w
    lip = _rgb(_mix(skin, np.array([170, 40, 50.0]), 0.6))
    if f.smile:
        d.chord(_attribute_box(f, "smile", R), 0, 180, fill=lip)
        d.chord([cx - 0.8 * mw, my - 0.15 * h, cx + 0.8 * mw, my + 0.08 * h], 0, 180, fill=(245, 245, 240))
    else:
        d.line([(cx - 0.8 * mw, my), (cx + 0.8 * mw, my)], fill=lip, width=max(2, int(0.07 * h)))

    # glasses (local): wraparound sunglasses, a dark band across both eyes in a 1-px frame. (Thin
    # rings were not carried by the 32 px base model's h: docs/experiments.md "how the toy glasses were chosen")
    if f.glasses:
        frame = _FRAME_COLOURS[f.frame_colour]
        lens, er = tuple(int(0.35 * v) for v in frame), 0.2 * w  # er: the eye's radius
        d.rounded_rectangle(_attribute_box(f, "glasses", R), radius=int(0.9 * er), fill=lens, outline=frame,
                            width=supersample)

    return np.asarray(img.resize((size, size), Image.BOX))


def draw_background(d: ImageDraw.ImageDraw, f: ToyFactors, R: int) -> None:
    """The background of an image ``R`` pixels wide: flat, a vertical gradient or diagonal stripes."""
    bg = np.array(colorsys.hsv_to_rgb(f.bg_hue, 0.35, f.bg_value)) * 255
    if f.bg_texture == 1:
        for y in range(R):
            d.line([(0, y), (R, y)], fill=_rgb(bg * (0.75 + 0.5 * y / R)))
    else:
        d.rectangle([0, 0, R, R], fill=_rgb(bg))
        if f.bg_texture == 2:
            for k in range(-R, R, R // 4):
                d.line([(k, 0), (k + R, R)], fill=_rgb(bg * 0.8), width=max(1, R // 16))


def draw_hair(d: ImageDraw.ImageDraw, f: ToyFactors, hair: np.ndarray, R: int) -> None:
    """The hair on top of the head in colour ``hair``: fringe, side part or curls (``hair_style``)."""
    cx, cy, w, h = (v * R for v in (f.face_cx, f.face_cy, f.face_w, f.face_h))
    top = cy - h
    if f.hair_style == 0:
        d.chord([cx - 1.05 * w, top - 0.12 * h, cx + 1.05 * w, cy + 0.25 * h], 180, 360, fill=_rgb(hair))
    elif f.hair_style == 1:
        d.chord([cx - 1.05 * w, top - 0.12 * h, cx + 1.05 * w, cy + 0.1 * h], 180, 360, fill=_rgb(hair))
        d.polygon([(cx - 1.0 * w, cy - 0.5 * h), (cx + 0.3 * w, top + 0.05 * h), (cx - 0.9 * w, cy - 0.1 * h)],
                  fill=_rgb(hair))
    else:
        for k in range(7):
            a = np.pi * (1 + k / 6)
            r = 0.32 * w
            x, y = cx + 0.8 * w * np.cos(a), cy - 0.55 * h + 0.55 * h * np.sin(a)
            d.ellipse([x - r, y - r, x + r, y + r], fill=_rgb(hair))


def draw_eyes_and_nose(d: ImageDraw.ImageDraw, f: ToyFactors, skin: np.ndarray, hair: np.ndarray, R: int) -> None:
    """Eyes (``eye_colour``, ``eye_spacing``), brows in the hair's colour and the nose."""
    cx, cy, w, h = (v * R for v in (f.face_cx, f.face_cy, f.face_w, f.face_h))
    P = lambda v: v * R  # noqa: E731
    ey, es, er = cy - 0.08 * h, P(f.eye_spacing), 0.2 * w
    for s in (-1, 1):
        ex = cx + s * es
        d.ellipse([ex - er, ey - 0.65 * er, ex + er, ey + 0.65 * er], fill=(250, 250, 250))
        d.ellipse([ex - 0.55 * er, ey - 0.55 * er, ex + 0.55 * er, ey + 0.55 * er],
                  fill=_rgb(_EYE_COLOURS[f.eye_colour]))
        d.ellipse([ex - 0.22 * er, ey - 0.22 * er, ex + 0.22 * er, ey + 0.22 * er], fill=(10, 10, 10))
        d.line([(ex - er, ey - 1.35 * er), (ex + er, ey - 1.45 * er)], fill=_rgb(hair * 0.8), width=max(1, int(0.3 * er)))
    d.line([(cx, ey + 0.6 * er), (cx - 0.25 * er, cy + 0.22 * h)], fill=_rgb(skin * 0.75), width=max(1, int(0.2 * er)))


def _attribute_box(f: ToyFactors, attribute: str, side: float) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) a local attribute is drawn in, in pixels of an image ``side`` wide:
    ``render`` draws the sunglasses band and the smile in it, ``attribute_region`` pads it."""
    cx, cy, w, h = (v * side for v in (f.face_cx, f.face_cy, f.face_w, f.face_h))
    if attribute == "glasses":
        ey, er = cy - 0.08 * h, 0.2 * w
        return (cx - 1.02 * w, ey - 1.25 * er, cx + 1.02 * w, ey + 1.25 * er)
    if attribute == "smile":
        my, mw = cy + 0.45 * h, 0.38 * w
        return (cx - mw, my - 0.22 * h, cx + mw, my + 0.16 * h)
    raise ValueError(f"{attribute!r} is a global attribute: it has no region")


def attribute_region(f: ToyFactors, attribute: str, size: int = 32, margin: float = 1.5) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1), exclusive end, outside which a local attribute changes nothing."""
    x0, y0, x1, y1 = _attribute_box(f, attribute, size)
    return (max(0, int(x0 - margin)), max(0, int(y0 - margin)),
            min(size, int(np.ceil(x1 + margin))), min(size, int(np.ceil(y1 + margin))))


def render_batch(seed: int, indices, size: int = 32, **attributes: int) -> np.ndarray:
    """Render identities ``indices`` of ``seed`` into a uint8 array (N, size, size, 3)."""
    return np.stack([render(sample_factors(seed, int(i), **attributes), size) for i in indices])
