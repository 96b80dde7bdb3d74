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

RENDERER_VERSION = 7
"""Recorded in each toy dataset.json; raise it whenever ``render`` draws anything differently
(2: glasses are wraparound sunglasses instead of thin rings; 5: the world screened as "renderer v5"
in docs/experiments.md — every attribute drawn as layout, each with a salient sub-factor; 6: the
glasses' sub-factor is where they are worn, a change of layout h carries, instead of the band's
outline, which the unedited noisy steps settle; 7: age's and gender's sub-factors in regions that do not
overlap and in one colour for every face — bald patches showing a pale scalp, dark beards — so that another face's
sub-factor is told apart by where it is drawn, not by colours that belong to a face)."""
ATTRIBUTES = ("glasses", "smile", "age", "gender")
"""Binary attributes. glasses/smile are local (eye / mouth region), age/gender are global."""

_HAIR_COLOURS = np.array([[30, 25, 22], [90, 55, 30], [200, 160, 90], [150, 60, 30], [60, 40, 30]], float)
_EYE_COLOURS = np.array([[60, 100, 190], [100, 60, 30], [60, 140, 70], [110, 110, 120]], float)
_SKIN_LIGHT, _SKIN_DARK = np.array([245, 210, 185], float), np.array([120, 75, 50], float)
_LENS, _FRAME = (8, 8, 10), (20, 20, 22)  # the sunglasses: a near-black band in a black frame
_MOUTH = (55, 12, 22)  # inside an open mouth
_SCALP = (250, 228, 215)  # a bald patch: one pale scalp for every face, like the beards' one dark colour
_BEARD = (45, 32, 26)  # every beard is dark, whatever the hair: its style, not its colour, tells beards apart
SUB_FACTORS = ("glasses_style", "mouth_shape", "bald_pattern", "beard_style")
SHOWN_ONLY_WITH = {"glasses": {"glasses_style": range(3)}, "smile": {"mouth_shape": range(3)},
                   "age": {"bald_pattern": range(3)}, "gender": {"beard_style": range(3)}}
"""The salient sub-factor of each attribute, with its values: shown only while the attribute is on
(a face without glasses has a glasses style that no pixel of it shows), it varies between target
images, so a swap can carry the donor's own salient content and ``donor_match`` can score it."""


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
    glasses_style: int = 0  # with glasses: 0 a band over the eyes, 1 the band pushed up onto the forehead, 2 one round lens over the left eye
    mouth_shape: int = 0  # with a smile: 0 a wide grin, 1 a tall open laugh, 2 pulled to one side
    bald_pattern: int = 0  # with age: the bald third of the hair, 0 left, 1 right, 2 middle
    beard_style: int = 0  # with gender: 0 long, from the chin down the neck, 1 a thick moustache, 2 sideburns
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
        face given glasses may rightly get any glasses style, whatever its unseen factor says."""
        first = self.flipped(attribute)
        hidden = SHOWN_ONLY_WITH.get(attribute, {}) if getattr(first, attribute) else {}
        choices = [dict(zip(hidden, values)) for values in itertools.product(*hidden.values())]
        return [first] + [c for c in (replace(first, **v) for v in choices) if c != first]

    def with_salient_of(self, donor: "ToyFactors", attribute: str) -> "ToyFactors":
        """The counterfactual a swap from ``donor`` should give: ``attribute`` flipped, and the factors
        only it shows (``SHOWN_ONLY_WITH``: e.g. the glasses' style) taken from the donor."""
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
    """Identity factors drawn from a generator seeded by (seed, index), the sub-factors from one of
    their own (so renderer 2's identities are unchanged); attributes are independent fair coins unless
    given (e.g. ``glasses=1``)."""
    rng = np.random.default_rng([seed, index])
    u = rng.random(20)  # u[13] drew renderer 2's frame colour, kept so that the other draws stay put
    sub = np.random.default_rng([seed, index, 4]).random(len(SUB_FACTORS))
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
        **{name: int(v * 3) for name, v in zip(SUB_FACTORS, sub)},
        **drawn,
    )


def _rgb(c) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.round(np.asarray(c, float)), 0, 255))


def _mix(a, b, w: float) -> np.ndarray:
    return (1 - w) * np.asarray(a, float) + w * np.asarray(b, float)


def render(f: ToyFactors, size: int = 32, supersample: int = 4) -> np.ndarray:
    """Render factors to an RGB uint8 array of shape (size, size, 3).

    Every attribute is drawn as a change of layout, large enough that a 32 px base model's h carries
    it (docs/experiments.md, renderers v3–v5: h carries where things are drawn far better than what
    colour they are): glasses near-black sunglasses (``glasses_style``: where they are worn); a smile an open mouth
    that drops the jaw (``mouth_shape``); age large ears and a bald patch showing a pale scalp
    (``bald_pattern``); gender long hair behind the face against short hair, a wide jaw and a dark beard
    (``beard_style``)."""
    R = size * supersample
    img = Image.new("RGB", (R, R))
    d = ImageDraw.Draw(img)
    draw_background(d, f, R)
    background = img.copy()  # shows again where an aged head has lost the long hair behind it

    skin = _mix(_SKIN_LIGHT, _SKIN_DARK, f.skin_tone)
    hair = _HAIR_COLOURS[f.hair_colour]
    cx, cy, w, h = (v * R for v in (f.face_cx, f.face_cy, f.face_w, f.face_h))
    top, ey, my = cy - h, cy - 0.08 * h, cy + 0.45 * h
    shirt = np.array(colorsys.hsv_to_rgb(f.shirt_hue, 0.6, 0.7)) * 255
    d.ellipse([cx - 1.9 * w, cy + 0.8 * h, cx + 1.9 * w, cy + 2.6 * h], fill=_rgb(shirt))
    if not f.gender:  # long hair falling behind the face to the shoulders
        d.rounded_rectangle([cx - 1.35 * w, top - 0.12 * h, cx + 1.35 * w, cy + 1.3 * h], radius=int(0.6 * w),
                            fill=_rgb(hair))
    bald = _bald_mask(f, R) if f.age else None
    if f.age:
        img.paste(background, mask=bald)
    d.rectangle([cx - 0.35 * w, cy + 0.6 * h, cx + 0.35 * w, cy + 1.2 * h], fill=_rgb(skin * 0.9))  # neck
    chin = cy + (1.18 if f.smile else 1.0) * h
    d.ellipse([cx - w, cy - h, cx + w, cy + h], fill=_rgb(skin))
    if f.smile:  # an open mouth drops the jaw: the face's lower half only, so the smile stays in its box
        d.chord([cx - w, cy - (chin - cy), cx + w, chin], 0, 180, fill=_rgb(skin))
    if f.gender:  # a wide jaw, and the beard style
        d.ellipse([cx - 1.1 * w, cy - 0.1 * h, cx + 1.1 * w, chin - 0.02 * h], fill=_rgb(skin))
        if f.beard_style == 0:  # long: from the chin hanging over the neck and chest
            d.polygon([(cx - 0.45 * w, my + 0.25 * h), (cx + 0.45 * w, my + 0.25 * h), (cx + 0.3 * w, cy + 1.65 * h),
                       (cx - 0.3 * w, cy + 1.65 * h)], fill=_BEARD)
        elif f.beard_style == 1:  # a thick moustache over the mouth
            d.ellipse([cx - 0.8 * w, my - 0.34 * h, cx + 0.8 * w, my - 0.06 * h], fill=_BEARD)
        else:  # sideburns down both cheeks, the chin shaven
            for s in (-1, 1):
                d.polygon([(cx + s * 1.08 * w, ey + 0.1 * h), (cx + s * 0.72 * w, ey + 0.1 * h),
                           (cx + s * 0.72 * w, cy + 0.55 * h), (cx + s * 0.98 * w, cy + 0.7 * h)], fill=_BEARD)
    hair_layer = Image.new("RGB", (R, R))
    draw_hair(ImageDraw.Draw(hair_layer), f, np.array([255.0, 255, 255]), R)
    hair_mask = hair_layer.convert("L")
    img.paste(_rgb(hair), mask=hair_mask)
    if f.age:  # the scalp shows where the hair is lost
        img.paste(_SCALP, mask=Image.fromarray(np.minimum(np.asarray(hair_mask), np.asarray(bald))))
        for s in (-1, 1):  # large ears, over any hair
            x = cx + s * 1.2 * w
            d.ellipse([x - 0.27 * w, ey - 0.28 * h, x + 0.27 * w, ey + 0.32 * h], fill=_rgb(skin * 0.92))
    draw_eyes_and_nose(d, f, skin, hair, R)

    lip = _rgb(_mix(skin, (170, 40, 50), 0.6))
    if f.smile:  # the open mouth, by mouth shape
        box = {0: [cx - 0.88 * w, my - 0.22 * h, cx + 0.88 * w, my + 0.42 * h],  # wide grin
               1: [cx - 0.52 * w, my - 0.26 * h, cx + 0.52 * w, my + 0.68 * h],  # tall open laugh
               2: [cx - 0.15 * w, my - 0.32 * h, cx + 0.9 * w, my + 0.45 * h]}[f.mouth_shape]  # pulled to one side
        d.ellipse(box, fill=_MOUTH, outline=lip, width=supersample)
    else:
        d.line([(cx - 0.3 * w, my), (cx + 0.3 * w, my)], fill=lip, width=max(2, int(0.07 * h)))

    if f.glasses:  # near-black lenses in a black frame, worn by glasses style
        er = 0.2 * w
        lift = 0.4 * h if f.glasses_style == 1 else 0.0  # pushed up onto the forehead, the eyes showing
        if f.glasses_style == 2:  # one round lens over the left eye
            ex = cx - f.eye_spacing * R
            d.ellipse([ex - 2.0 * er, ey - 1.9 * er, ex + 2.0 * er, ey + 1.9 * er], fill=_LENS, outline=_FRAME, width=supersample)
        else:
            d.rounded_rectangle([cx - 1.02 * w, ey - 1.25 * er - lift, cx + 1.02 * w, ey + 1.25 * er - lift],
                                radius=int(0.9 * er), fill=_LENS, outline=_FRAME, width=supersample)
    return np.asarray(img.resize((size, size), Image.BOX))


def _bald_mask(f: ToyFactors, R: int) -> Image.Image:
    """Where an aged head has lost its hair (255), by ``bald_pattern``: the left, right or middle third, three
    regions that do not overlap."""
    cx, cy, w, h = (v * R for v in (f.face_cx, f.face_cy, f.face_w, f.face_h))
    top = cy - h
    m = Image.new("L", (R, R), 0)
    d = ImageDraw.Draw(m)
    x0, x1 = {0: (-1.5, -0.33), 1: (0.33, 1.5), 2: (-0.33, 0.33)}[f.bald_pattern]  # left, right, middle
    d.rectangle([cx + x0 * w, top - 0.3 * h, cx + x1 * w, cy - 0.3 * h], fill=255)
    return m


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
    """The box (x0, y0, x1, y1) a local attribute is drawn in, whatever its sub-factor, in pixels of an
    image ``side`` wide: ``render`` draws the sunglasses and the open mouth with its dropped jaw in it,
    ``attribute_region`` pads it."""
    cx, cy, w, h = (v * side for v in (f.face_cx, f.face_cy, f.face_w, f.face_h))
    if attribute == "glasses":  # from the band pushed up onto the forehead down to the single lens's rim
        ey = cy - 0.08 * h
        return (cx - 1.3 * w, ey - 0.4 * h - 0.4 * w, cx + 1.3 * w, ey + 0.4 * w)
    if attribute == "smile":  # the open mouth and the dropped jaw (a wide jaw's outline moves from 0.1 h above cy)
        return (cx - 1.12 * w, cy - 0.12 * h, cx + 1.12 * w, cy + 1.2 * h)
    raise ValueError(f"{attribute!r} is a global attribute: it has no region")


def attribute_region(f: ToyFactors, attribute: str, size: int = 32, margin: float = 1.5) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1), exclusive end, outside which a local attribute changes nothing."""
    x0, y0, x1, y1 = _attribute_box(f, attribute, size)
    return (max(0, int(x0 - margin)), max(0, int(y0 - margin)),
            min(size, int(np.ceil(x1 + margin))), min(size, int(np.ceil(y1 + margin))))


def render_batch(seed: int, indices, size: int = 32, **attributes: int) -> np.ndarray:
    """Render identities ``indices`` of ``seed`` into a uint8 array (N, size, size, 3)."""
    return np.stack([render(sample_factors(seed, int(i), **attributes), size) for i in indices])
