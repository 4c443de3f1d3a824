"""The preview backend: an offline stand-in that draws an abstract picture for every request.

No diffusion model is involved. Each image is a flat-colour abstract composition built from the
request alone, so the service runs end to end on any machine:

* **Deterministic.** Everything random comes from one :class:`random.Random` seeded with a SHA-256
  digest of the prompt, the style tool, its palette and composition, the size and the seed, so the
  same request gives byte-identical PNGs in every process (Python's salted ``hash()`` is never
  used).
* **Driven by the prompt.** Every word of the prompt is hashed into a motif (shape, position, size,
  colour, rotation) and the digest also turns and shifts the whole layout, so two prompts give
  clearly different pictures even with the same style.
* **Shaped by the style tool.** The first palette colour is the ground, the others colour the
  shapes; the composition picks one of the layouts in :data:`COMPOSITIONS` (an unknown one falls
  back to ``"scatter"``).
* **Marked as a preview.** A translucent banner across the bottom reads ``PREVIEW`` with the model
  name and the start of the caller's prompt beneath, so nobody mistakes it for a model's output.
* **Edits keep the source.** With ``request.sources`` each image is an edit of the first source,
  scaled to cover the canvas and centre-cropped: the new picture is blended half and half over it,
  or, with a mask, replaces it where the mask is transparent and leaves it untouched where the
  mask is opaque (a mask without alpha is opaque all over; a mask without sources is ignored).
  Further sources appear as thumbnails in the new picture's top right corner. The banner is
  stamped last, over the source too.

Speed comes from drawing large flat shapes directly at full size, computing the smooth backdrop at
no more than 256 px and scaling it up once, and encoding with Pillow at zlib's fastest level.
A 1024 x 1024 image takes about 25 ms; ``benchmarks/preview_render.py`` measures it.
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import io
import math
import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont, ImageOps

from darkroom.engine.base import BackendError, RenderRequest

COMPOSITIONS: tuple[str, ...] = (
    "radial",
    "horizon",
    "grid",
    "stripes",
    "scatter",
    "centered",
    "mosaic",
    "waves",
)
FALLBACK_COMPOSITION = "scatter"

MIN_SIDE = 16
MAX_SIDE = 8192
MAX_WORDS = 24  # prompt words that become motifs; later words still change the digest
MIN_MOTIFS = 4  # short prompts are padded with digest-derived motifs
PROMPT_CHARS = 60  # how much of the caller's prompt the banner repeats
BACKDROP_SIDE = 256  # smooth gradients and glows are computed at most this large
BLEND = 0.5  # in an edit without a mask: how much of the new picture covers the source
MAX_THUMBS = 4  # in an edit: further sources shown as thumbnails; later ones are ignored
THUMB_FRACTION = 0.2  # a thumbnail's side, as a fraction of the canvas's shorter side

RGB = tuple[int, int, int]
RGBA = tuple[int, int, int, int]

_SHAPES = ("circle", "ring", "triangle", "square", "hexagon", "star")
_SIDES = {"triangle": 3, "square": 4, "hexagon": 6}
_HEX_COLOUR = re.compile(r"#?([0-9a-fA-F]{6})")
_WORD = re.compile(r"[^\W_]+")
_WHITE: RGB = (255, 255, 255)
_BLACK: RGB = (0, 0, 0)


# --------------------------------------------------------------------------------------------
# The scene: everything a composition needs, derived from the request


@dataclass(frozen=True)
class _Motif:
    """One prompt word, hashed into something to draw."""

    shape: str
    u: float  # horizontal position, 0..1
    v: float  # vertical position, 0..1
    size: float  # 0..1, scaled by each composition
    colour: RGB
    turn: float  # rotation in degrees


@dataclass(frozen=True)
class _Scene:
    width: int
    height: int
    palette: tuple[RGB, ...]  # at least three colours; the first is the ground
    motifs: tuple[_Motif, ...]  # at least MIN_MOTIFS
    angle: float  # prompt-derived rotation of the layout, radians
    shift: tuple[float, float]  # prompt-derived offset of the layout, fractions of the canvas
    rng: random.Random  # for the details no word decides

    @property
    def short(self) -> int:
        return min(self.width, self.height)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.width * (0.5 + self.shift[0]), self.height * (0.5 + self.shift[1]))

    def colour(self, index: int) -> RGB:
        """A shape colour: the palette after the ground colour, cycling."""
        accents = self.palette[1:]
        return accents[index % len(accents)]


def _digest(request: RenderRequest) -> bytes:
    style = request.style
    fields = (
        request.prompt,
        style.tool,
        style.composition,
        ",".join(style.palette),
        str(request.width),
        str(request.height),
        str(request.seed),
    )
    return hashlib.sha256("\x1f".join(fields).encode("utf-8")).digest()


def _unit(data: bytes, index: int) -> float:
    """A float in [0, 1) from bytes ``2 * index`` and ``2 * index + 1`` of a digest."""
    return int.from_bytes(data[2 * index : 2 * index + 2], "big") / 65536.0


def _parse_palette(palette: Sequence[str]) -> list[RGB]:
    colours: list[RGB] = []
    for text in palette:
        match = _HEX_COLOUR.fullmatch(text.strip())
        if match:
            value = int(match.group(1), 16)
            colours.append((value >> 16, (value >> 8) & 0xFF, value & 0xFF))
    return colours


def _hsv(hue: float, saturation: float, value: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def _derived_palette(digest: bytes) -> list[RGB]:
    """Five colours for a style without a palette: a dark ground and accents around one hue."""
    hue = _unit(digest, 0)
    return [
        _hsv(hue + 0.55, 0.55, 0.18),
        _hsv(hue, 0.65, 0.95),
        _hsv(hue + 0.08, 0.45, 0.85),
        _hsv(hue + 0.5, 0.6, 0.8),
        _hsv(hue - 0.1, 0.3, 0.98),
    ]


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _luma(colour: RGB) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def _motifs(prompt: str, digest: bytes, accents: Sequence[RGB]) -> tuple[_Motif, ...]:
    words = _WORD.findall(prompt.lower())[:MAX_WORDS]
    words += [f"~{i}" for i in range(MIN_MOTIFS - len(words))]
    motifs = []
    for index, word in enumerate(words):
        data = hashlib.sha256(digest + f"{index}:{word}".encode()).digest()
        motifs.append(
            _Motif(
                shape=_SHAPES[data[0] % len(_SHAPES)],
                u=_unit(data, 1),
                v=_unit(data, 2),
                size=_unit(data, 3),
                colour=accents[data[8] % len(accents)],
                turn=_unit(data, 5) * 360.0,
            )
        )
    return tuple(motifs)


def _scene(request: RenderRequest) -> _Scene:
    digest = _digest(request)
    palette = _parse_palette(request.style.palette) or _derived_palette(digest)
    while len(palette) < 3:  # one or two colours: add contrasting tints of the ground
        contrast = _WHITE if _luma(palette[0]) < 128 else _BLACK
        palette.append(_mix(palette[0], contrast, 0.35 * len(palette)))
    rng = random.Random(int.from_bytes(digest, "big"))
    return _Scene(
        width=request.width,
        height=request.height,
        palette=tuple(palette),
        motifs=_motifs(request.prompt, digest, palette[1:]),
        angle=rng.uniform(0.0, math.tau),
        shift=(rng.uniform(-0.12, 0.12), rng.uniform(-0.12, 0.12)),
        rng=rng,
    )


# --------------------------------------------------------------------------------------------
# Drawing helpers


class _Glow(NamedTuple):
    """A soft disc of light on the backdrop, in canvas pixels."""

    x: float
    y: float
    radius: float
    colour: RGB
    strength: float  # opacity at the centre, 0..1


@cache
def _ramps() -> tuple[Image.Image, Image.Image]:
    """256 x 256 ramps from 0 to 255: top to bottom and left to right."""
    down = Image.linear_gradient("L")
    return down, down.transpose(Image.Transpose.TRANSPOSE)


@cache
def _glow_mask(strength: float) -> Image.Image:
    """A 256 x 256 soft disc: ``strength`` opaque in the middle, nothing at the rim and beyond."""
    # radial_gradient reaches 255 in the corners, so the inscribed circle's rim is at 181.
    lut = [round(255 * strength * max(0.0, 1.0 - v / 181.0) ** 2) for v in range(256)]
    return Image.radial_gradient("L").point(lut)


def _backdrop(
    scene: _Scene, start: RGB, end: RGB, angle: float, glows: Sequence[_Glow] = ()
) -> Image.Image:
    """A full-size canvas: a linear gradient along ``angle`` with soft glows laid on it.

    Both are smooth, so they are computed at most BACKDROP_SIDE large and scaled up once.
    """
    scale = min(1.0, BACKDROP_SIDE / max(scene.width, scene.height))
    size = (max(1, round(scene.width * scale)), max(1, round(scene.height * scale)))
    down, across = _ramps()
    dx, dy = math.cos(angle), math.sin(angle)
    if dy < 0:
        down = down.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    if dx < 0:
        across = across.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    ramp = Image.blend(down, across, abs(dx) / (abs(dx) + abs(dy)))
    image = ImageOps.colorize(ramp.resize(size, Image.Resampling.BILINEAR), start, end)
    for glow in glows:
        side = max(2, round(2 * glow.radius * scale))
        mask = _glow_mask(glow.strength).resize((side, side), Image.Resampling.BILINEAR)
        corner = (round((glow.x - glow.radius) * scale), round((glow.y - glow.radius) * scale))
        image.paste(glow.colour, (*corner, corner[0] + side, corner[1] + side), mask)
    return image.resize((scene.width, scene.height), Image.Resampling.BILINEAR)


def _ground(scene: _Scene, glows: Sequence[_Glow] = ()) -> Image.Image:
    """The usual backdrop: the ground colour shading towards the first accent."""
    ground = scene.palette[0]
    return _backdrop(scene, ground, _mix(ground, scene.palette[1], 0.35), scene.angle, glows)


def _rgba(colour: RGB, alpha: int) -> RGBA:
    return (colour[0], colour[1], colour[2], alpha)


def _draw(image: Image.Image) -> ImageDraw.ImageDraw:
    """A drawing context that blends translucent fills onto the canvas."""
    return ImageDraw.Draw(image, "RGBA")


def _disc(
    draw: ImageDraw.ImageDraw,
    x: float,
    y: float,
    r: float,
    fill: RGBA | None = None,
    ring: RGBA | None = None,
    width: float = 1.0,
) -> None:
    box = (x - r, y - r, x + r, y + r)
    draw.ellipse(box, fill=fill, outline=ring, width=max(1, round(width)))


def _shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    x: float,
    y: float,
    radius: float,
    turn: float,
    fill: RGBA,
) -> None:
    """Draw one motif shape centred on (x, y)."""
    r = max(radius, 1.0)
    if shape == "circle":
        _disc(draw, x, y, r, fill=fill)
    elif shape == "ring":
        _disc(draw, x, y, r, ring=fill, width=r * 0.22)
    elif shape == "star":
        points = []
        for k in range(10):
            a = math.radians(turn) + k * math.pi / 5
            reach = r if k % 2 == 0 else r * 0.45
            points.append((x + reach * math.cos(a), y + reach * math.sin(a)))
        draw.polygon(points, fill=fill)
    else:
        draw.regular_polygon((x, y, r), _SIDES[shape], rotation=turn, fill=fill)


# --------------------------------------------------------------------------------------------
# Compositions: each draws a full-size canvas from a scene


def _radial(scene: _Scene) -> Image.Image:
    """Rays and concentric rings around an off-centre point, the motifs in orbit."""
    cx, cy = scene.centre
    image = _ground(scene, [_Glow(cx, cy, scene.short * 0.7, scene.colour(0), 0.55)])
    draw = _draw(image)
    reach = math.hypot(scene.width, scene.height)
    rays = 6 + scene.rng.randrange(10)
    for k in range(rays):
        a0 = scene.angle + k * math.tau / rays
        a1 = a0 + math.tau / rays * 0.45
        edge = [(cx + reach * math.cos(a), cy + reach * math.sin(a)) for a in (a0, a1)]
        draw.polygon([(cx, cy), *edge], fill=_rgba(scene.colour(k), 46))
    rings = 4 + scene.rng.randrange(4)
    for k in range(rings):
        r = scene.short * 0.42 * (1 - k / rings)
        _disc(draw, cx, cy, r, ring=_rgba(scene.colour(k + 1), 170), width=r * 0.08)
    for m in scene.motifs:
        a = m.u * math.tau + scene.angle
        orbit = scene.short * (0.16 + 0.32 * m.v)
        x, y = cx + orbit * math.cos(a), cy + orbit * math.sin(a)
        radius = scene.short * (0.02 + 0.05 * m.size)
        _shape(draw, m.shape, x, y, radius, m.turn, _rgba(m.colour, 220))
    return image


def _horizon(scene: _Scene) -> Image.Image:
    """A sky with a sun, ridges whose peaks are the prompt's words, the sun's path on water."""
    w, h, first, second = scene.width, scene.height, scene.motifs[0], scene.motifs[1]
    horizon = h * (0.55 + 0.12 * first.v)
    sun = max(scene.palette[1:], key=_luma)
    sx, sr = w * (0.2 + 0.6 * first.u), scene.short * (0.06 + 0.07 * first.size)
    sy = horizon - scene.short * (0.14 + 0.2 * second.v)
    sky_low = _mix(scene.palette[0], scene.palette[1], 0.6)
    glows = [_Glow(sx, sy, sr * 5, sun, 0.5)]
    image = _backdrop(scene, scene.palette[0], sky_low, math.pi / 2, glows)
    draw = _draw(image)
    _disc(draw, sx, sy, sr, fill=_rgba(sun, 255))
    ridges = sorted(scene.palette[1:], key=_luma, reverse=True)  # far and pale to near and dark
    count = len(scene.motifs)
    for layer, colour in enumerate(ridges):
        base = horizon - scene.short * 0.02 * (len(ridges) - layer)
        outline = [(0.0, horizon)]
        for k in range(-1, count + 1):
            m = scene.motifs[(k + layer) % count]
            x = w * (k + 0.5 + 0.8 * (m.u - 0.5)) / count
            outline.append((x, base - scene.short * (0.04 + 0.22 * m.size) / (1 + 0.5 * layer)))
        outline.append((float(w), horizon))
        draw.polygon(outline, fill=_rgba(colour, 200 + 55 * layer // len(ridges)))
    water = _mix(ridges[-1], ridges[-2], 0.3)
    draw.rectangle((0, horizon, w, h), fill=_rgba(water, 255))
    thickness = max(1.0, scene.short * 0.006)
    for k in range(12):
        y = horizon + (h - horizon) * (k + 1) / 13
        half = sr * (1.6 - k * 0.1) * (0.6 + 0.8 * scene.rng.random())
        draw.rectangle((sx - half, y, sx + half, y + thickness), fill=_rgba(sun, 150))
    return image


def _grid(scene: _Scene) -> Image.Image:
    """Rounded tiles in palette colours, each carrying one word's motif."""
    image = _ground(scene)
    draw = _draw(image)
    cols = 3 + scene.rng.randrange(4)
    cell = scene.width / cols
    rows = math.ceil(scene.height / cell)
    ox = scene.shift[0] * cell
    oy = (scene.height - rows * cell) / 2 + scene.shift[1] * cell
    gap = cell * 0.07
    start = scene.rng.randrange(len(scene.palette))
    for row in range(-1, rows + 1):  # one extra ring of tiles: the shift may expose the edges
        for col in range(-1, cols + 1):
            index = (row + 1) * (cols + 2) + col + 1
            x0, y0 = ox + col * cell, oy + row * cell
            tile = scene.colour(start + 2 * index + row)
            box = (x0 + gap, y0 + gap, x0 + cell - gap, y0 + cell - gap)
            draw.rounded_rectangle(box, radius=cell * 0.12, fill=_rgba(tile, 215))
            m = scene.motifs[index % len(scene.motifs)]
            ink = scene.colour(start + 2 * index + row + 1)
            turn = m.turn + math.degrees(scene.angle)
            radius = cell * (0.14 + 0.16 * m.size)
            _shape(draw, m.shape, x0 + cell / 2, y0 + cell / 2, radius, turn, _rgba(ink, 235))
    return image


def _stripes(scene: _Scene) -> Image.Image:
    """Slanted bands whose widths follow the words, with a few rings laid over them."""
    image = _ground(scene)
    draw = _draw(image)
    cx, cy = scene.centre
    reach = math.hypot(scene.width, scene.height)
    along = (math.cos(scene.angle), math.sin(scene.angle))
    across = (-along[1], along[0])

    def point(offset: float, distance: float) -> tuple[float, float]:
        return (
            cx + across[0] * offset + along[0] * distance,
            cy + across[1] * offset + along[1] * distance,
        )

    offset, k = -reach, 0
    while offset < reach:
        m = scene.motifs[k % len(scene.motifs)]
        width = scene.short * (0.03 + 0.12 * m.size)
        if k % 3 != 2:  # every third band lets the ground show through
            corners = [point(offset, -reach), point(offset, reach)]
            corners += [point(offset + width, reach), point(offset + width, -reach)]
            draw.polygon(corners, fill=_rgba(m.colour, 190 + 20 * (k % 3)))
        offset += width + scene.short * 0.01
        k += 1
    for m in scene.motifs[:5]:
        r = scene.short * (0.05 + 0.1 * m.size)
        ring = _rgba(scene.palette[0], 230)
        _disc(draw, m.u * scene.width, m.v * scene.height, r, ring=ring, width=r * 0.18)
    return image


def _scatter(scene: _Scene) -> Image.Image:
    """Every word's motif where its hash puts it, largest first, over fine confetti."""
    image = _ground(scene, [_Glow(*scene.centre, scene.short * 0.6, scene.colour(0), 0.35)])
    draw = _draw(image)
    for k in range(24 + scene.rng.randrange(24)):
        x, y = scene.rng.random() * scene.width, scene.rng.random() * scene.height
        r = scene.short * (0.004 + 0.012 * scene.rng.random())
        _disc(draw, x, y, r, fill=_rgba(scene.colour(k), 200))
    for m in sorted(scene.motifs, key=lambda m: -m.size):
        x = (m.u + scene.shift[0]) % 1.0 * scene.width
        y = (m.v + scene.shift[1]) % 1.0 * scene.height
        radius = scene.short * (0.04 + 0.14 * m.size)
        _shape(draw, m.shape, x, y, radius, m.turn, _rgba(m.colour, 185))
    return image


def _centered(scene: _Scene) -> Image.Image:
    """One haloed emblem in the middle made of the first two words, the others as satellites."""
    cx = scene.width * (0.5 + scene.shift[0] * 0.3)
    cy = scene.height * (0.5 + scene.shift[1] * 0.3)
    image = _ground(scene, [_Glow(cx, cy, scene.short * 0.55, scene.colour(0), 0.6)])
    draw = _draw(image)
    for k in range(3):
        r = scene.short * (0.34 + 0.05 * k)
        ring = _rgba(scene.colour(k), 140 - 35 * k)
        _disc(draw, cx, cy, r, ring=ring, width=scene.short * 0.008)
    first, second, *others = scene.motifs
    turn = math.degrees(scene.angle)
    _shape(draw, first.shape, cx, cy, scene.short * 0.27, turn, _rgba(first.colour, 240))
    inner = scene.colour(scene.palette[1:].index(first.colour) + 1)
    _shape(draw, second.shape, cx, cy, scene.short * 0.12, second.turn, _rgba(inner, 245))
    for k, m in enumerate(others):
        a = scene.angle + k * math.tau / len(others)
        x, y = cx + scene.short * 0.42 * math.cos(a), cy + scene.short * 0.42 * math.sin(a)
        radius = scene.short * (0.015 + 0.03 * m.size)
        _shape(draw, m.shape, x, y, radius, m.turn, _rgba(m.colour, 230))
    return image


def _mosaic(scene: _Scene) -> Image.Image:
    """The canvas split again and again where the words say, tiles filled flat, some marked."""
    image = Image.new("RGB", (scene.width, scene.height), scene.palette[0])
    draw = _draw(image)
    motifs = scene.motifs
    cells = [(0.0, 0.0, float(scene.width), float(scene.height))]
    for k in range(len(motifs) + 6):  # split the largest tile, across its longer side
        largest = max(cells, key=lambda c: (c[2] - c[0]) * (c[3] - c[1]))
        cells.remove(largest)
        x0, y0, x1, y1 = largest
        t = 0.3 + 0.4 * motifs[k % len(motifs)].u
        if x1 - x0 > y1 - y0:
            cut = x0 + (x1 - x0) * t
            cells += [(x0, y0, cut, y1), (cut, y0, x1, y1)]
        else:
            cut = y0 + (y1 - y0) * t
            cells += [(x0, y0, x1, cut), (x0, cut, x1, y1)]
    gap = max(1.0, scene.short * 0.012)
    for k, (x0, y0, x1, y1) in enumerate(cells):
        m = motifs[k % len(motifs)]
        tile = scene.palette[(k + 1) % len(scene.palette)] if m.v > 0.2 else scene.palette[0]
        draw.rectangle((x0 + gap, y0 + gap, x1 - gap, y1 - gap), fill=_rgba(tile, 255))
        if m.size > 0.55:
            ink = scene.colour(k + 2) if scene.colour(k + 2) != tile else scene.palette[0]
            radius = min(x1 - x0, y1 - y0) * 0.3
            _shape(draw, m.shape, (x0 + x1) / 2, (y0 + y1) / 2, radius, m.turn, _rgba(ink, 235))
    return image


def _waves(scene: _Scene) -> Image.Image:
    """Layered swells under a moon; their swing and rhythm come from the words."""
    w, h, first = scene.width, scene.height, scene.motifs[0]
    moon = max(scene.palette[1:], key=_luma)
    mx, my, mr = w * (0.2 + 0.6 * first.u), h * (0.12 + 0.15 * first.v), scene.short * 0.07
    sky_low = _mix(scene.palette[0], scene.colour(0), 0.3)
    glows = [_Glow(mx, my, scene.short * 0.3, moon, 0.45)]
    image = _backdrop(scene, scene.palette[0], sky_low, math.pi / 2, glows)
    draw = _draw(image)
    _disc(draw, mx, my, mr, fill=_rgba(moon, 230))
    layers = max(5, len(scene.palette))
    steps = 64
    for k in range(layers):
        m = scene.motifs[k % len(scene.motifs)]
        base = h * (0.3 + 0.62 * k / layers + scene.shift[1] * 0.3)
        swing = scene.short * (0.02 + 0.07 * m.size)
        cycles = 0.6 + 2.2 * m.u
        phase = math.radians(m.turn) + scene.angle
        crest = [
            (w * i / steps, base + swing * math.sin(phase + cycles * math.tau * i / steps))
            for i in range(steps + 1)
        ]
        draw.polygon(
            [*crest, (float(w), float(h)), (0.0, float(h))], fill=_rgba(scene.colour(k), 205)
        )
    return image


_LAYOUTS: dict[str, Callable[[_Scene], Image.Image]] = {
    "radial": _radial,
    "horizon": _horizon,
    "grid": _grid,
    "stripes": _stripes,
    "scatter": _scatter,
    "centered": _centered,
    "mosaic": _mosaic,
    "waves": _waves,
}


# --------------------------------------------------------------------------------------------
# Edits: the new picture laid over the caller's source image


@dataclass(frozen=True)
class _Edit:
    """The sources of an edit, decoded and fitted to the canvas once for all its images."""

    base: Image.Image  # the first source, RGBA, scaled to cover the canvas and centre-cropped
    keep: Image.Image | None  # "L": 255 where the source stays, from the mask; None: no mask
    others: tuple[Image.Image, ...]  # the further sources, RGBA, fitted to thumbnail squares


def _open_png(data: bytes, what: str, code: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
            return image.convert("RGBA")
    except Exception:  # broken data makes Pillow raise all sorts of errors
        raise BackendError(code, f"{what} is not a readable PNG image") from None


def _thumb_side(width: int, height: int) -> int:
    return max(1, round(min(width, height) * THUMB_FRACTION))


def _edit(request: RenderRequest) -> _Edit | None:
    """Decode and fit the request's sources and mask; None for a plain generation."""
    if not request.sources:
        return None
    size = (request.width, request.height)
    side = _thumb_side(*size)
    images = (  # all are checked, and one at a time is held at full size
        _open_png(data, f"source image {i + 1}", "invalid_source")
        for i, data in enumerate(request.sources)
    )
    base = ImageOps.fit(next(images), size)
    others: list[Image.Image] = []
    for image in images:
        if len(others) < MAX_THUMBS:
            others.append(ImageOps.fit(image, (side, side)))
    keep = None
    if request.mask is not None:
        alpha = _open_png(request.mask, "the mask", "invalid_mask").getchannel("A")
        keep = ImageOps.fit(alpha, size, Image.Resampling.BILINEAR)
    return _Edit(base, keep, tuple(others))


def _apply(edit: _Edit, picture: Image.Image, accent: RGB) -> Image.Image:
    """The picture as an edit of ``edit.base``: blended over it, or only where the mask allows.

    Transparent parts of the source show the new picture. Thumbnails of the further sources go
    into the new picture first, along the top right corner, so a mask also governs them.
    """
    w, _ = picture.size
    side = _thumb_side(*picture.size)
    gap = max(1, side // 12)
    draw = _draw(picture)
    for k, thumb in enumerate(edit.others):
        x, y = w - (k + 1) * (side + 2 * gap), 2 * gap
        draw.rectangle((x - gap, y - gap, x + side + gap - 1, y + side + gap - 1), fill=accent)
        picture.paste(thumb, (x, y), thumb)
    source = picture.convert("RGBA")
    source.alpha_composite(edit.base)
    flat = source.convert("RGB")
    if edit.keep is None:
        return Image.blend(flat, picture, BLEND)
    return Image.composite(flat, picture, edit.keep)


# --------------------------------------------------------------------------------------------
# The PREVIEW banner


def _font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's embedded scalable font (Aileron). Loading it is cheap, and a fresh object per
    # render keeps one FreeType face from being shared between threads.
    return ImageFont.load_default(size=max(1, round(size)))


def _printable(text: str) -> str:
    """``text`` on one line, reduced to ASCII: the built-in font has no other glyphs."""
    folded = unicodedata.normalize("NFKD", " ".join(text.split()))
    kept = "".join(c for c in folded if not unicodedata.combining(c))
    return "".join(c if " " <= c <= "~" else "?" for c in kept)


def _caption(request: RenderRequest) -> str:
    prompt = _printable(request.user_prompt)
    if len(prompt) > PROMPT_CHARS:
        cut = prompt[:PROMPT_CHARS]
        space = cut.rfind(" ")
        prompt = (cut[:space] if space > PROMPT_CHARS * 3 // 4 else cut).rstrip(" ,;:.-") + "\u2026"
    model = _printable(request.model)
    return f"{model}  \u00b7  {prompt}" if prompt else model


def _fit(draw: ImageDraw.ImageDraw, text: str, size: float, width: float) -> tuple[str, float]:
    """Shrink the font (down to 70 %), then cut the text, until ``text`` fits in ``width``."""
    natural = draw.textlength(text, font=_font(size))
    if natural > width:
        size = max(size * 0.7, size * width / natural)
    font = _font(size)
    body = text
    while body and draw.textlength(text, font=font) > width:
        body = body[: len(body) - 1 - len(body) // 10].rstrip()
        text = body + "\u2026" if body else ""
    return text, size


def _stamp(image: Image.Image, request: RenderRequest, accent: RGB) -> None:
    """Lay the translucent PREVIEW banner across the bottom of the image."""
    w, h = image.size
    band = min(h, max(round(min(w, h) * 0.14), min(56, h // 3)))
    top = h - band
    draw = _draw(image)
    draw.rectangle((0, top, w, h), fill=(10, 10, 14, 185))
    draw.rectangle((0, top, w, top + max(1, band // 24) - 1), fill=_rgba(accent, 255))
    title = _font(band * 0.42)
    draw.text((w / 2, top + band * 0.42), "PREVIEW", font=title, fill=_WHITE, anchor="mm")
    caption, size = _fit(draw, _caption(request), max(9.0, band * 0.19), w * 0.92)
    font = _font(size)
    draw.text((w / 2, top + band * 0.78), caption, font=font, fill=(215, 215, 222), anchor="mm")


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes at zlib's fastest level: same pixels and Pillow version, same bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# The backend


def _picture(request: RenderRequest) -> tuple[Image.Image, RGB]:
    """The new picture for ``request.seed``, without the banner, and the banner's accent."""
    scene = _scene(request)
    layout = _LAYOUTS.get(request.style.composition, _LAYOUTS[FALLBACK_COMPOSITION])
    return layout(scene), scene.palette[1]


def _render(request: RenderRequest, edit: _Edit | None) -> Image.Image:
    image, accent = _picture(request)
    if edit is not None:
        image = _apply(edit, image, accent)
    _stamp(image, request, accent)
    return image


def render_image(request: RenderRequest) -> Image.Image:
    """The picture for ``request.seed`` (``request.count`` is ignored), banner included."""
    return _render(request, _edit(request))


class PreviewBackend:
    """Draws deterministic abstract previews; see the module docstring."""

    name = "preview"
    edits = True

    def render(self, request: RenderRequest) -> list[bytes]:
        if request.count < 1:
            raise BackendError("invalid_size", f"count must be at least 1, got {request.count}")
        for side, value in (("width", request.width), ("height", request.height)):
            if not MIN_SIDE <= value <= MAX_SIDE:
                message = f"{side} must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {value}"
                raise BackendError("invalid_size", message)
        edit = _edit(request)  # decoded once for all the images
        images = []
        for i in range(request.count):
            request.check_canceled()  # each image is a step
            images.append(
                encode_png(_render(dataclasses.replace(request, seed=request.seed + i), edit))
            )
        return images
