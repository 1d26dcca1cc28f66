"""Drawing one demo photo: a cat or a dog, by shape, on a random scene (see `catdog.synthetic`).

Photo i of a class is drawn from its own generator, seeded with (seed, i, class); its size and
JPEG quality from one seeded with (seed, i) alone, shared by cat.i and dog.i.
"""

import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

CLASSES = ("cat", "dog")  # label 0, label 1

_Colour = tuple[int, int, int]
_BLACK = (25, 20, 20)
_COARSE = 8  # grid size of a background's smooth part

# Fur colours (RGB) and how often each class wears them: overlapping on purpose.
_FUR = {
    "black": (32, 30, 30),
    "dark grey": (72, 72, 78),
    "grey": (132, 130, 134),
    "silver": (182, 180, 176),
    "white": (236, 232, 224),
    "cream": (226, 206, 170),
    "golden": (204, 160, 98),
    "ginger": (208, 120, 52),
    "brown": (132, 86, 50),
    "dark brown": (80, 50, 30),
}
_FUR_WEIGHTS = {
    "cat": (3, 2, 3, 1, 2, 1, 0.5, 2.5, 1, 0.5),
    "dog": (2, 0.5, 0.5, 0.5, 1.5, 2, 3, 1, 3, 2),
}
_CAT_EYES = ((120, 170, 60), (200, 170, 40), (190, 120, 40), (90, 150, 200))
_DOG_EYES = ((70, 40, 20), (50, 30, 15), (110, 70, 30), (90, 150, 200))


def draw_photo(seed: int, label: int, index: int) -> tuple[Image.Image, int]:
    """Photo `index` of class `label` (0 cat, 1 dog) and the JPEG quality to save it with."""
    # Seed lists of one length: numpy's SeedSequence treats [s, i] and [s, i, 0] alike.
    frame = np.random.default_rng([seed, index, 0])
    width = int(frame.integers(80, 321))
    height = int(np.clip(width * frame.uniform(0.65, 1.5), 60, 400))
    quality = int(frame.integers(55, 96))

    rng = np.random.default_rng([seed, index, 1 + label])
    photo = _background(rng, width, height)
    _clutter(rng, photo, count=int(rng.integers(0, 7)))
    _animal(rng, CLASSES[label], photo)
    if rng.random() < 0.2:  # something in front of the animal
        _clutter(rng, photo, count=int(rng.integers(1, 3)), max_size=0.25)
    return _camera(rng, photo), quality


# --- the scene ---------------------------------------------------------------------------


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A two-colour gradient in a random direction, plain, blotchy or striped.

    The smooth part is computed on a coarse grid and enlarged (bicubic reproduces a linear
    ramp), which costs far less than computing every pixel.
    """
    first, second = _random_colour(rng), _random_colour(rng)
    angle = rng.uniform(0, 2 * math.pi)
    grid = np.linspace(0, 1, _COARSE, dtype=np.float32)
    ramp = grid[None, :] * math.cos(angle) + grid[:, None] * math.sin(angle)
    ramp = (ramp - ramp.min()) / float(np.ptp(ramp))
    coarse = np.asarray(first, np.float32) + ramp[..., None] * np.subtract(second, first)

    texture = rng.integers(0, 3)
    if texture == 1:  # blotches
        coarse += rng.normal(0, rng.uniform(10, 35), coarse.shape).astype(np.float32)
    smooth = Image.fromarray(coarse.clip(0, 255).astype(np.uint8))
    photo = smooth.resize((width, height), Image.BICUBIC)
    if texture == 2:  # stripes: floorboards, curtains, blinds
        period, depth = rng.uniform(6, 40), rng.uniform(8, 30)
        vertical = rng.random() < 0.5
        length = width if vertical else height
        bands = np.sin(2 * math.pi * np.arange(length) / period) > 0
        profile = Image.fromarray((bands * 2 * depth).astype(np.uint8)[None, :])
        if not vertical:
            profile = profile.transpose(Image.Transpose.TRANSPOSE)
        stripes = profile.resize((width, height), Image.NEAREST).convert("RGB")
        photo = ImageChops.add(photo, stripes, offset=-round(depth))  # ± depth
    return photo


def _clutter(
    rng: np.random.Generator, photo: Image.Image, count: int, max_size: float = 0.5
) -> None:
    """Random ellipses, boxes, polygons and lines: furniture, toys, plants."""
    draw = ImageDraw.Draw(photo)
    width, height = photo.size
    for _ in range(count):
        size = rng.uniform(0.08, max_size) * min(width, height)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        colour = _random_colour(rng)
        kind = rng.integers(0, 4)
        if kind == 0:
            draw.ellipse(_box(x, y, size, size * rng.uniform(0.4, 1.0)), fill=colour)
        elif kind == 1:
            draw.rectangle(_box(x, y, size, size * rng.uniform(0.3, 1.5)), fill=colour)
        elif kind == 2:
            corners = int(rng.integers(3, 7))
            draw.polygon(_points(x, y, size * rng.uniform(0.5, 1.0, corners), rng), fill=colour)
        else:
            end = (x + rng.uniform(-2, 2) * size, y + rng.uniform(-2, 2) * size)
            draw.line([(x, y), end], fill=colour, width=max(1, int(size / 8)))


def _camera(rng: np.random.Generator, photo: Image.Image) -> Image.Image:
    """Focus, then exposure b, contrast c and luminance noise in one pass over the pixels:

    out = b * (c * x + (1 - c) * mean(x)) + sigma * N(0, 1)
    """
    if rng.random() < 0.3:
        photo = photo.filter(ImageFilter.BoxBlur(rng.uniform(0.3, 1.0)))
    brightness, contrast = rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3)
    pixels = np.array(photo, dtype=np.float32)
    noise = rng.standard_normal((photo.height, photo.width, 1), dtype=np.float32)
    offset = brightness * (1 - contrast) * float(pixels.mean())
    pixels *= brightness * contrast  # in place: no full-size temporaries
    pixels += offset
    noise *= rng.uniform(2, 12)
    pixels += noise  # one value per pixel for all channels, a third the cost
    return Image.fromarray(pixels.clip(0, 255, out=pixels).astype(np.uint8))


# --- the animal ----------------------------------------------------------------------------


class _Pen:
    """ImageDraw in the animal's own upright frame, turned by `degrees` about `centre`.

    Shapes are polygons (ellipses with 32 corners) so the whole animal can be rotated
    without rotating an image layer, which costs far more than drawing.
    """

    def __init__(self, draw: ImageDraw.ImageDraw, centre: tuple[float, float], degrees: float):
        self.draw = draw
        self.centre = centre
        self.cos, self.sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))

    def _turn(self, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        x0, y0 = self.centre
        return [
            (
                x0 + (x - x0) * self.cos - (y - y0) * self.sin,
                y0 + (x - x0) * self.sin + (y - y0) * self.cos,
            )
            for x, y in points
        ]

    def polygon(self, points: list[tuple[float, float]], fill: _Colour) -> None:
        self.draw.polygon(self._turn(points), fill=fill)

    def ellipse(self, x: float, y: float, half_w: float, half_h: float, fill: _Colour) -> None:
        """The ellipse centred on (x, y) with half-axes half_w, half_h."""
        self.polygon([(x + half_w * c, y + half_h * s) for c, s in _CIRCLE], fill)

    def line(self, points: list[tuple[float, float]], fill: _Colour, width: float) -> None:
        self.draw.line(self._turn(points), fill=fill, width=max(1, round(width)), joint="curve")


_CIRCLE = [(math.cos(2 * math.pi * k / 32), math.sin(2 * math.pi * k / 32)) for k in range(32)]


def _animal(rng: np.random.Generator, kind: str, photo: Image.Image) -> None:
    """Draw a cat or a dog onto `photo`: body, head, ears, face, slightly rotated."""
    width, height = photo.size
    r = rng.uniform(0.18, 0.26) * min(width, height)  # head radius
    cx, cy = rng.uniform(0.41, 0.59) * width, rng.uniform(0.345, 0.485) * height
    pen = _Pen(ImageDraw.Draw(photo), (cx, cy), rng.uniform(-15, 15))
    cat = kind == "cat"

    fur = _fur(rng, kind)
    shade = _mix(fur, (0, 0, 0), rng.uniform(0.1, 0.5))  # ears, patches, stripes
    light = _mix(fur, (240, 232, 220), rng.uniform(0.2, 0.8))  # muzzle, blaze

    # Body below the head: dogs a little broader on average.
    body_w = r * (rng.uniform(1.2, 1.8) if cat else rng.uniform(1.4, 2.1))
    body_y = cy + r * rng.uniform(1.3, 1.8)
    pen.ellipse(cx + r * rng.uniform(-0.4, 0.4), body_y, body_w, r * rng.uniform(1.3, 1.8), fur)

    # Head: cats round or a little wide, dogs a little long.
    head_w = r * (rng.uniform(1.0, 1.15) if cat else rng.uniform(0.85, 1.05))
    head_h = r * (rng.uniform(0.9, 1.0) if cat else rng.uniform(0.95, 1.15))
    if cat:
        ears = "pointed" if rng.random() < 0.94 else "folded"
    else:
        ears = "floppy" if rng.random() < 0.8 else "upright"
    if ears == "floppy":  # drawn first: the head covers where they hang from
        _floppy_ears(rng, pen, cx, cy, head_w, head_h, shade)
    pen.ellipse(cx, cy, head_w, head_h, fur)
    if ears == "folded":
        _folded_ears(pen, cx, cy, head_w, head_h, shade)
    elif ears != "floppy":
        _upright_ears(rng, pen, cx, cy, head_w, head_h, fur, rounded=ears == "upright")

    if rng.random() < 0.25:  # a lighter blaze down the face
        pen.ellipse(cx, cy + 0.15 * head_h, 0.3 * head_w, 0.9 * head_h, light)
    if cat and rng.random() < 0.35:  # tabby stripes on the forehead
        for dx in (-0.25, 0.0, 0.25):
            x = cx + dx * head_w
            pen.line([(x, cy - 0.85 * head_h), (x, cy - 0.45 * head_h)], shade, r / 10)
    if not cat and rng.random() < 0.2:  # a patch over one eye
        side = rng.choice((-1, 1))
        pen.ellipse(cx + side * 0.4 * head_w, cy - 0.1 * head_h, 0.4 * r, 0.35 * r, shade)

    _eyes(rng, pen, cx, cy, head_w, head_h, cat)
    _muzzle(rng, pen, cx, cy, r, head_h, cat, light)


def _upright_ears(
    rng: np.random.Generator,
    pen: _Pen,
    cx: float,
    cy: float,
    head_w: float,
    head_h: float,
    fur: _Colour,
    rounded: bool,
) -> None:
    """Triangles standing on top of the head; a dog's are broader with a rounded tip."""
    height = head_h * rng.uniform(0.65, 1.0)
    base = head_w * (rng.uniform(0.6, 0.85) if rounded else rng.uniform(0.5, 0.7))
    tilt = rng.uniform(0.15, 0.45)  # radians outwards from vertical
    inner = (230, 160, 160) if rng.random() < 0.7 else _mix(fur, (0, 0, 0), 0.4)
    for side in (-1, 1):
        root = (cx + side * 0.55 * head_w, cy - 0.7 * head_h)
        along = (side * math.sin(tilt), -math.cos(tilt))  # unit vector from root to tip
        left = (root[0] - base / 2, root[1] + 0.15 * head_h)
        right = (root[0] + base / 2, root[1] + 0.15 * head_h)
        if rounded:  # the tip is a circle of radius `round_r` the sides run into
            round_r = base * 0.3
            centre = (
                root[0] + along[0] * (height - round_r),
                root[1] + along[1] * (height - round_r),
            )
            across = (-along[1] * round_r, along[0] * round_r)
            pen.polygon(
                [
                    left,
                    (centre[0] - across[0], centre[1] - across[1]),
                    (centre[0] + across[0], centre[1] + across[1]),
                    right,
                ],
                fur,
            )
            pen.ellipse(*centre, round_r, round_r, fur)
        else:
            tip = (root[0] + along[0] * height, root[1] + along[1] * height)
            pen.polygon([left, tip, right], fur)
        inner_tip = (root[0] + along[0] * height * 0.7, root[1] + along[1] * height * 0.7)
        inner_y = root[1] + 0.05 * head_h
        pen.polygon(
            [(root[0] - base * 0.27, inner_y), inner_tip, (root[0] + base * 0.27, inner_y)], inner
        )


def _floppy_ears(
    rng: np.random.Generator,
    pen: _Pen,
    cx: float,
    cy: float,
    head_w: float,
    head_h: float,
    colour: _Colour,
) -> None:
    """Long flaps hanging from the top of the head down its sides."""
    length = head_h * rng.uniform(1.0, 1.7)
    flap = head_w * rng.uniform(0.35, 0.6)
    for side in (-1, 1):
        x = cx + side * head_w * rng.uniform(0.75, 0.95)
        top = cy - 0.6 * head_h
        pen.ellipse(x, top + length / 2, flap / 2, length / 2, colour)


def _folded_ears(
    pen: _Pen, cx: float, cy: float, head_w: float, head_h: float, colour: _Colour
) -> None:
    """A fold-eared cat: small caps pressed to the top of the head."""
    for side in (-1, 1):
        pen.ellipse(
            cx + side * 0.45 * head_w, cy - 0.8 * head_h, 0.3 * head_w, 0.18 * head_h, colour
        )


def _eyes(
    rng: np.random.Generator,
    pen: _Pen,
    cx: float,
    cy: float,
    head_w: float,
    head_h: float,
    cat: bool,
) -> None:
    """Cats: larger almond eyes, green to amber, often slit pupils; dogs: small, dark, round."""
    palette = _CAT_EYES if cat else _DOG_EYES
    iris = palette[int(rng.integers(len(palette)))]
    size = head_w * (rng.uniform(0.18, 0.26) if cat else rng.uniform(0.13, 0.2))
    spread = head_w * rng.uniform(0.35, 0.5)
    y = cy - head_h * rng.uniform(0.0, 0.2)
    slit = cat and rng.random() < 0.7
    for side in (-1, 1):
        x = cx + side * spread
        pen.ellipse(x, y, size, size * (0.75 if cat else 1.0), iris)
        pen.ellipse(x, y, size * (0.2 if slit else 0.55), size * (0.7 if slit else 0.55), _BLACK)
        pen.ellipse(x + size * 0.2, y - size * 0.2, size * 0.15, size * 0.15, (250, 250, 250))


def _muzzle(
    rng: np.random.Generator,
    pen: _Pen,
    cx: float,
    cy: float,
    r: float,
    head_h: float,
    cat: bool,
    light: _Colour,
) -> None:
    """Cats: two small whisker pads, a little nose, whiskers; dogs: a long muzzle, big nose."""
    short_nosed = not cat and rng.random() < 0.12  # pugs, bulldogs
    if cat or short_nosed:
        pad = r * rng.uniform(0.15, 0.22)
        pad_y = cy + head_h * rng.uniform(0.3, 0.45)
        for side in (-1, 1):
            pen.ellipse(cx + side * pad * 0.8, pad_y, pad, pad * 0.85, light)
        nose_w = r * (rng.uniform(0.1, 0.18) if cat else rng.uniform(0.22, 0.32))
        nose_y = pad_y - pad * 0.6
    else:
        muzzle_w = r * rng.uniform(0.55, 0.9)
        muzzle_h = r * rng.uniform(0.65, 1.05)
        pad_y = cy + head_h * rng.uniform(0.4, 0.65)
        pen.ellipse(cx, pad_y, muzzle_w, muzzle_h, light)
        nose_w = r * rng.uniform(0.22, 0.38)
        nose_y = pad_y - muzzle_h * rng.uniform(0.0, 0.5)
    if cat:
        pink = rng.random() < 0.6
        top = nose_y - nose_w * 0.6
        pen.polygon(
            [(cx - nose_w, top), (cx + nose_w, top), (cx, nose_y + nose_w * 0.6)],
            (225, 140, 150) if pink else _BLACK,
        )
    else:
        pen.ellipse(cx, nose_y, nose_w, nose_w * 0.7, _BLACK)
    mouth_y = nose_y + nose_w * 1.4
    for side in (-1, 1):
        corner = (cx + side * nose_w, mouth_y + nose_w * 0.3)
        pen.line([(cx, nose_y), (cx, mouth_y), corner], (40, 30, 30), r / 25)
    if not cat and rng.random() < 0.3:  # tongue out
        pen.ellipse(cx, mouth_y + nose_w * 0.8, nose_w * 0.7, nose_w, (230, 110, 130))

    if rng.random() < (0.85 if cat else 0.15):
        length = r * (rng.uniform(0.6, 1.0) if cat else rng.uniform(0.25, 0.45))
        colour = (240, 240, 235) if rng.random() < 0.6 else (30, 30, 30)
        for side in (-1, 1):
            for spread in (-0.2, 0.0, 0.2):
                start = (cx + side * r * 0.2, nose_y + nose_w)
                end = (start[0] + side * length, start[1] + spread * length)
                pen.line([start, end], colour, r / 30)


# --- small helpers -----------------------------------------------------------------------


def _fur(rng: np.random.Generator, kind: str) -> _Colour:
    """One of the class's fur colours, each channel jittered."""
    weights = np.asarray(_FUR_WEIGHTS[kind], float)
    base = list(_FUR.values())[rng.choice(len(_FUR), p=weights / weights.sum())]
    red, green, blue = (int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in base)
    return red, green, blue


def _random_colour(rng: np.random.Generator) -> _Colour:
    red, green, blue = (int(c) for c in rng.integers(20, 236, 3))
    return red, green, blue


def _mix(colour: _Colour, other: _Colour, amount: float) -> _Colour:
    """`colour` moved `amount` (0 to 1) of the way towards `other`."""
    red, green, blue = (int(a + (b - a) * amount) for a, b in zip(colour, other, strict=True))
    return red, green, blue


def _box(x: float, y: float, half_w: float, half_h: float) -> tuple[float, float, float, float]:
    """The bounding box of an ellipse centred on (x, y) with the given half-axes."""
    return (x - half_w, y - half_h, x + half_w, y + half_h)


def _points(
    x: float, y: float, radii: np.ndarray, rng: np.random.Generator
) -> list[tuple[float, float]]:
    """A star-shaped polygon around (x, y), one corner per radius."""
    angles = np.sort(rng.uniform(0, 2 * math.pi, len(radii)))
    return [(x + r * math.cos(a), y + r * math.sin(a)) for r, a in zip(radii, angles, strict=True)]
