"""The procedural face-mask renderer: draws a realistic mask onto a face photo and returns the exact map of it.

Everything is drawn from code (no template images): the outline comes from the facial geometry (five
landmarks), the fabric from procedural patterns, the look from a curved-surface shading model. A mask is
described in *mask coordinates*: x along the eye line in units of the eye distance, y from the eyes towards
the mouth in units of the eye-to-mouth distance (eyes at y=0, nose tip near 0.6, mouth at 1, chin near 2).
Inside the outline a point also has *surface coordinates* (s, t): s in [-1, 1] from the left to the right
side, t in [0, 1] from the top edge to the bottom edge, so pleats, hems and seams follow the shape.
"""

import io
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from unmask_hf.faces import TEMPLATE_LANDMARKS

MASK_STYLES: tuple[str, ...] = ("surgical", "cloth", "n95", "kn95", "gaiter")  # the embedded weights' training styles
# Opt-in appearance families beyond those (training can select them, or hold one out to measure generalisation).
EXTRA_STYLES: tuple[str, ...] = ("printed", "knit", "respirator", "bandana")
WORLD_STYLES: tuple[str, ...] = MASK_STYLES + EXTRA_STYLES
SUPERSAMPLE = 4  # outlines are drawn at 4× and box-filtered: soft, anti-aliased edges
LOW_PROBABILITY = 0.12  # how often a mask is worn below the nose
HIGH_RAISE = (0.04, 0.18)  # how far a mask worn high sits above the usual (make_sample's high_probability)


def _mask_frame_landmarks() -> np.ndarray:
    """The template landmarks expressed in mask coordinates (derived, so a refined template carries over)."""
    eyes, mouth = TEMPLATE_LANDMARKS[:2].mean(0), TEMPLATE_LANDMARKS[3:].mean(0)
    axes = np.stack([TEMPLATE_LANDMARKS[1] - TEMPLATE_LANDMARKS[0], mouth - eyes], axis=1)  # columns: x, y units
    return np.linalg.solve(axes, (TEMPLATE_LANDMARKS - eyes).T).T


CANONICAL_LANDMARKS = _mask_frame_landmarks()


@dataclass
class RenderedMask:
    """A face wearing a rendered mask, with the exact map of the pixels the mask changed."""

    masked: np.ndarray  # H×W×3 uint8, the face wearing the mask
    mask: np.ndarray  # H×W uint8, 255 where the rendered mask changed the pixel, else 0
    style: str


@dataclass
class _Shape:
    """An outline in mask coordinates: top and bottom edges as functions of s, half-width as a function of t."""

    top: Callable[[np.ndarray], np.ndarray]
    bottom: Callable[[np.ndarray], np.ndarray]
    width_t: Sequence[float] = (0.0, 1.0)  # knots in t ...
    width: Sequence[float] = (1.05, 1.0)  # ... and half-widths there

    def half_width(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.width_t, self.width)

    def outline(self, n: int = 32) -> np.ndarray:
        s, t = np.linspace(-1, 1, n), np.linspace(0, 1, n)

        def side(sign: float, t: np.ndarray) -> np.ndarray:
            top, bottom = self.top(np.full(n, sign)), self.bottom(np.full(n, sign))
            return np.stack([sign * self.half_width(t), top + t * (bottom - top)], 1)

        top = np.stack([s * self.half_width(np.zeros(n)), self.top(s)], 1)
        bottom = np.stack([-s * self.half_width(np.ones(n)), self.bottom(-s)], 1)
        return np.concatenate([top, side(1.0, t), bottom, side(-1.0, t[::-1])])

    def surface(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mask coordinates → surface coordinates (s, t) and the distance to the nearest edge in mask units."""
        top, bottom = self.top(np.zeros(1)), self.bottom(np.zeros(1))
        t = np.clip((y - top) / (bottom - top), 0, 1)  # start from the centre line's edges
        for _ in range(3):  # fixed-point iteration: s depends on the width at t, t on the edges at s
            w = self.half_width(t)
            s = np.clip(x / w, -1, 1)
            top, bottom = self.top(s), self.bottom(s)
            height = np.maximum(bottom - top, 1e-3)
            t = np.clip((y - top) / height, 0, 1)
        edge = np.minimum(np.minimum(t, 1 - t) * height, (1 - np.abs(s)) * w)
        return s, t, edge


@dataclass
class _Design:
    """Everything one mask needs: its outline, how its fabric looks, and strings/parts drawn on top."""

    shape: _Shape
    paint: Callable  # (x, y, s, t, edge, px) → H×W×3 float colour in 0..255
    strings: list = field(default_factory=list)  # ear loops / straps: polylines in mask coordinates ...
    string_width: float = 0.0  # ... their width in mask units ...
    string_rgb: tuple = (0, 0, 0)  # ... and colour
    parts: list = field(default_factory=list)  # (polygon in mask coords, paint(x, y, px) → colour)
    clip_parts: bool = True  # parts lie on the body (valves); False: they may stick out (cartridges)


# ---------------------------------------------------------------- procedural textures (vectorised numpy)

def _value_noise(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, freq: float) -> np.ndarray:
    """Smooth noise in [0, 1] at mask coordinates: a random lattice (spacing 1/freq) smoothly interpolated."""
    gx, gy = x * freq, y * freq
    x0, y0 = np.floor(gx.min()), np.floor(gy.min())
    fx, fy = gx - x0, gy - y0
    ix, iy = fx.astype(np.int32), fy.astype(np.int32)
    lattice = rng.random((int(iy.max()) + 2, int(ix.max()) + 2), dtype=np.float32)
    fx, fy = fx - ix, fy - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    top = lattice[iy, ix] * (1 - fx) + lattice[iy, ix + 1] * fx
    bottom = lattice[iy + 1, ix] * (1 - fx) + lattice[iy + 1, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


def _band(distance: np.ndarray, half_width: float, px: float) -> np.ndarray:
    """1 inside |distance| < half_width, 0 outside, with a one-pixel soft edge (px = pixels per mask unit)."""
    return np.clip((half_width - np.abs(distance)) * px + 0.5, 0, 1)


def _stripes(q: np.ndarray, period: float, duty: float, px: float) -> np.ndarray:
    """Anti-aliased square wave along coordinate q: 1 on the stripes."""
    distance = (np.abs(np.mod(q / period, 1.0) - 0.5)) * period
    return _band(distance, duty * period / 2, px)


def _mix(a: np.ndarray, b, weight: np.ndarray) -> np.ndarray:
    return a + (np.asarray(b, np.float32) - a) * weight[..., None]


def _jitter_color(rng: np.random.Generator, rgb, amount: float = 10) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, amount, 3), 0, 255).astype(np.float32)


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def _fill(x: np.ndarray, rgb) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.float32), x.shape + (3,)).copy()


SURGICAL_COLORS = [(140, 190, 228), (125, 178, 222), (160, 205, 232), (120, 190, 175), (140, 200, 190),
                   (236, 238, 240), (34, 34, 38), (238, 168, 190)]
CLOTH_COLORS = [(24, 24, 27), (24, 24, 27), (30, 38, 70), (62, 62, 68), (140, 140, 146), (228, 228, 224),
                (72, 96, 140), (165, 32, 42), (100, 28, 38), (84, 90, 52), (196, 180, 150), (228, 150, 170),
                (30, 118, 124), (40, 70, 170), (200, 158, 50), (98, 62, 130), (150, 190, 225), (60, 100, 60)]
RESPIRATOR_COLORS = [(240, 240, 236), (240, 240, 236), (232, 228, 214), (205, 206, 208), (30, 30, 33),
                     (140, 180, 220), (236, 176, 196)]
STRAP_COLORS = [(90, 130, 190), (220, 196, 110), (236, 236, 236), (236, 236, 236), (200, 130, 90), (40, 40, 40)]
FLORAL_COLORS = [[(238, 90, 120), (250, 220, 90)], [(245, 245, 240), (240, 200, 60)], [(120, 160, 230), (250, 250, 250)],
                 [(230, 120, 60), (90, 50, 30)]]  # petals, centres
GAITER_COLORS = [(24, 24, 27), (30, 38, 70), (62, 62, 68), (84, 90, 52), (140, 140, 146), (165, 32, 42)] + CLOTH_COLORS
BANDANA_COLORS = [(170, 28, 36), (180, 30, 36), (28, 40, 90), (25, 25, 28), (60, 90, 60)]
VALVE_COLORS = [(235, 235, 232), (235, 235, 232), (150, 152, 156), (45, 45, 48), (90, 130, 190)]
BRIGHT_COLORS = [(246, 206, 40), (250, 226, 80), (214, 30, 40), (236, 60, 60), (240, 120, 170), (250, 170, 200),
                 (244, 130, 40), (120, 200, 60), (60, 170, 220), (150, 80, 200), (16, 16, 18), (250, 250, 250)]
PRINT_KINDS = ["dots", "hearts", "stripes", "plaid", "checks", "florals", "camo", "text"]
CARTRIDGE_COLORS = [(214, 70, 160), (236, 120, 190), (230, 196, 60), (110, 120, 80), (70, 70, 74), (150, 150, 154)]
CAMO_PALETTES = [[(86, 96, 60), (60, 70, 42), (120, 100, 70), (34, 32, 28)],
                 [(196, 176, 140), (160, 130, 96), (120, 96, 70), (210, 196, 170)],
                 [(150, 150, 152), (100, 100, 104), (60, 60, 64), (200, 200, 200)]]


def _pattern(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, px: float, kind: str, base) -> np.ndarray:
    """A printed or woven fabric pattern at mask coordinates (x, y)."""
    other = _jitter_color(rng, _pick(rng, CLOTH_COLORS), 12)
    angle = rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4]) + rng.normal(0, 0.05)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    if kind == "stripes":
        period = rng.uniform(0.13, 0.45)
        out = _mix(_fill(x, base), other, _stripes(u, period, rng.uniform(0.2, 0.5), px))
        if rng.random() < 0.4:  # a thin accent stripe
            out = _mix(out, _jitter_color(rng, (235, 235, 230)), _stripes(u + period / 2, period, 0.08, px))
        return out
    if kind == "checks":  # gingham / buffalo check: where two stripe sets cross the colour is full
        period = rng.uniform(0.16, 0.52)
        weight = 0.5 * (_stripes(x, period, 0.5, px) + _stripes(y, period, 0.5, px))
        return _mix(_fill(x, base), other, weight)
    if kind == "dots":
        period = rng.uniform(0.16, 0.39)
        gx, gy = x / period, y / period
        gx = gx + 0.5 * (np.floor(gy) % 2)  # offset rows
        distance = np.hypot(np.mod(gx, 1.0) - 0.5, np.mod(gy, 1.0) - 0.5) * period
        dot = _jitter_color(rng, _pick(rng, [(240, 240, 236), (30, 30, 30), other]))
        return _mix(_fill(x, base), dot, _band(distance, period * rng.uniform(0.12, 0.3), px))
    if kind == "florals":
        return _florals(x, y, rng, px, base)
    if kind == "hearts":
        period = rng.uniform(0.3, 0.5)
        gx, gy = x / period, y / period
        gx = gx + 0.5 * (np.floor(gy) % 2)
        size = rng.uniform(0.3, 0.4)  # heart half-size as a fraction of the period
        hx, hy = (np.mod(gx, 1.0) - 0.5) / size, -(np.mod(gy, 1.0) - 0.5) / size + 0.25
        implicit = (hx * hx + hy * hy - 1) ** 3 - hx * hx * hy ** 3  # the heart curve: negative inside
        heart = _jitter_color(rng, _pick(rng, [(214, 30, 40), (240, 120, 170), (250, 250, 250), (16, 16, 18), other]))
        return _mix(_fill(x, base), heart, np.clip(-implicit * period * size * px + 0.5, 0, 1))
    if kind == "plaid":  # tartan: wide and thin bands of two colours crossing at right angles
        period = rng.uniform(0.35, 0.7)
        thin = _jitter_color(rng, _pick(rng, BRIGHT_COLORS + [(235, 235, 230)]), 10)
        out = _fill(x, base)
        for q in (u, v):
            out = _mix(out, other, 0.55 * _stripes(q, period, 0.4, px))
            out = _mix(out, thin, 0.7 * _stripes(q + period / 2, period, 0.06, px))
        return out
    if kind == "text":  # a logo block and a line of "letters" across the front
        ink = _jitter_color(rng, _pick(rng, [(250, 250, 250), (16, 16, 18), (214, 30, 40), (246, 206, 40)]), 8)
        cx, cy, h = rng.uniform(-0.6, -0.2), rng.uniform(0.9, 1.3), rng.uniform(0.25, 0.36)
        cells = rng.random((2, 6)) < 0.85  # which letter cells are inked, two rows
        col, row = np.floor((x - cx) / (h * 0.7)), np.floor((y - cy) / h)
        inside = (col >= 0) & (col < 6) & (row >= 0) & (row < 2)
        inked = cells[np.clip(row, 0, 1).astype(int), np.clip(col, 0, 5).astype(int)] & inside
        lx, ly = np.mod((x - cx) / (h * 0.7), 1.0) - 0.5, np.mod((y - cy) / h, 1.0) - 0.5
        stroke = np.maximum(_band(lx * h * 0.7, h * 0.22, px), _band(ly * h, h * 0.1, px)) * _band(ly * h, h * 0.38, px)
        logo = _band(np.hypot(x - cx + h * 1.3, y - cy - h), h * 0.8, px)
        return _mix(_mix(_fill(x, base), ink, stroke * inked), ink, logo)
    if kind == "camo":
        palette = [_jitter_color(rng, c, 6) for c in _pick(rng, CAMO_PALETTES)]
        out = _fill(x, palette[0])
        for color in palette[1:]:  # two octaves on tilted axes, so no blob lines up with the noise lattice
            freq = rng.uniform(2.3, 4.6)
            blobs = 0.65 * _value_noise(u, v * 1.3, rng, freq) + 0.35 * _value_noise(v, u, rng, freq * 2.3)
            out = _mix(out, color, np.clip((blobs - 0.56) * px * 0.3 + 0.5, 0, 1))
        return out
    # "noise": heathered / melange knit, streaky along the weave
    streaks = _value_noise(u * 0.5, v * 2, rng, 11) - 0.5
    grain = _value_noise(u, v, rng, 35) - 0.5
    return _fill(x, base) * (1 + 0.15 * streaks + 0.3 * grain)[..., None]


def _florals(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, px: float, base) -> np.ndarray:
    """Scattered five-petal flowers (and small dots) on a ground colour."""
    period = rng.uniform(0.29, 0.52)
    petals = rng.integers(4, 7)
    colors = [_jitter_color(rng, c) for c in _pick(rng, FLORAL_COLORS)]
    gx, gy = x / period, y / period
    cx, cy = np.floor(gx).astype(np.int32), np.floor(gy).astype(np.int32)
    ox, oy = cx - cx.min(), cy - cy.min()
    jitter = rng.uniform(-0.18, 0.18, (2, oy.max() + 1, ox.max() + 1))
    spin = rng.uniform(0, 2 * np.pi, (oy.max() + 1, ox.max() + 1))
    fx, fy = gx - cx - 0.5 - jitter[0, oy, ox], gy - cy - 0.5 - jitter[1, oy, ox]
    radius = np.hypot(fx, fy) * period
    theta = np.arctan2(fy, fx) + spin[oy, ox]
    size = period * 0.3
    petal_edge = size * (0.45 + 0.55 * np.abs(np.cos(petals * theta / 2)))
    out = _mix(_fill(x, base), colors[0], np.clip((petal_edge - radius) * px + 0.5, 0, 1))
    out = _mix(out, colors[1], _band(radius, size * 0.25, px))
    sprinkle = np.hypot(np.mod(gx + 0.5, 1.0) - 0.5, np.mod(gy + 0.5, 1.0) - 0.5) * period
    return _mix(out, colors[1], _band(sprinkle, period * 0.05, px))


# ---------------------------------------------------------------- shading

def _lambert(nx: np.ndarray, ny: np.ndarray, light: np.ndarray, ambient: float) -> np.ndarray:
    """Diffuse shading of a surface with normal (nx, ny, ·) under a directional light, peak 1."""
    nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0.02, 1))
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    return ambient + (1 - ambient) * np.clip((nx * light[0] + ny * light[1] + nz * light[2]) / norm, 0, 1)


def _wrap_normal(s: np.ndarray, t: np.ndarray, across: float = 0.75, down: float = 0.55) -> tuple[np.ndarray, np.ndarray]:
    """Normals of a mask wrapped around the face: sides turn away, the bottom tucks under the chin."""
    return s * across, down * (t - 0.4) + 1.2 * np.clip(t - 0.8, 0, None)


# ---------------------------------------------------------------- the five styles

def _ear_loops(shape: _Shape, rng: np.random.Generator) -> list:
    """Two loops per side, from the mask's corners to the root of the ear."""
    loops = []
    ear_x = rng.uniform(1.44, 1.57)  # where the loop disappears behind the cheek or into the hair
    for side in (-1, 1):
        for t, ear_y in ((0.0, rng.uniform(0.16, 0.34)), (1.0, rng.uniform(0.69, 0.92))):
            edge = shape.top if t == 0 else shape.bottom
            corner = np.array([side * shape.half_width(np.array(t)), edge(np.array([float(side)]))[0]])
            ear = np.array([side * ear_x, ear_y])
            sag = (corner + ear) / 2 + [0.0, rng.uniform(0.0, 0.075)]
            u = np.linspace(0, 1, 12)[:, None]
            loops.append((1 - u) ** 2 * corner + 2 * u * (1 - u) * sag + u ** 2 * ear)
    return loops


def _surgical(rng: np.random.Generator, low: float) -> _Design:
    top_c, top_side = rng.uniform(0.19, 0.32) + low, rng.uniform(0.44, 0.57) + low * 0.8
    bottom_c, bottom_side = rng.uniform(2.05, 2.2), rng.uniform(1.44, 1.6)
    nose = rng.uniform(0.04, 0.09)  # the nose wire bends over the bridge: a small peak in the top edge
    shape = _Shape(top=lambda s: top_side + (top_c - top_side) * (1 - s * s) - nose * np.exp(-(s / 0.18) ** 2),
                   bottom=lambda s: bottom_side + (bottom_c - bottom_side) * (1 - np.abs(s) ** 1.6),
                   width=(rng.uniform(1.36, 1.47), rng.uniform(1.24, 1.34)))
    base = _jitter_color(rng, _pick(rng, SURGICAL_COLORS), 6)
    pleats = 3
    light = _light(rng)
    ambient = rng.uniform(0.45, 0.6)

    def paint(x, y, s, t, edge, px):
        nx, ny = _wrap_normal(s, t)
        # Pleats: each band tilts down a little and its fold casts a thin shadow; bands follow t, so they
        # fan out over the chin and converge at the hems.
        phase = np.mod(t * (pleats + 1.2) - 0.6, 1.0)
        ny = ny + 0.35 * (phase - 0.5) * (t > 0.15) * (t < 0.92)
        shade = _lambert(nx, ny, light, ambient)
        fold = _band(np.minimum(phase, 1 - phase) * 1.8 / (pleats + 1.2), 0.01, px) * (t > 0.15) * (t < 0.92)
        shade = shade * (1 - 0.22 * fold)
        hem = _band(edge, 0.07, px)  # the bound edges are double layered, a shade darker
        shade = shade * (1 - 0.07 * hem)
        return _fill(x, base) * shade[..., None]

    loop_rgb = _jitter_color(rng, (235, 235, 235) if rng.random() < 0.8 else base, 6)
    return _Design(shape, paint, _ear_loops(shape, rng), rng.uniform(0.024, 0.04), loop_rgb)


CLOTH_KINDS = ["solid", "solid", "solid", "stripes", "checks", "dots", "florals", "camo", "noise"]


def _cloth(rng: np.random.Generator, low: float, kinds: Sequence[str] = CLOTH_KINDS,
           palette: Sequence = CLOTH_COLORS, binding: bool = False) -> _Design:
    """A fabric mask, contoured or pleated; `binding`: a contrasting bound edge (the "printed" family)."""
    top_c, top_side = rng.uniform(0.17, 0.29) + low, rng.uniform(0.47, 0.63) + low * 0.8
    bottom_c, bottom_side = rng.uniform(2.05, 2.26), rng.uniform(1.38, 1.63)
    contoured = rng.random() < 0.6  # the two-panel contoured mask with a seam down the middle, else pleated
    shape = _Shape(top=lambda s: top_side + (top_c - top_side) * (1 - np.abs(s) ** (1.3 if contoured else 2)),
                   bottom=lambda s: bottom_side + (bottom_c - bottom_side) * (1 - np.abs(s) ** (1.4 if contoured else 1.8)),
                   width=(rng.uniform(1.34, 1.47), rng.uniform(1.2, 1.34)))
    base = _jitter_color(rng, _pick(rng, palette), 10)
    kind = _pick(rng, kinds)
    light = _light(rng)
    ambient = rng.uniform(0.4, 0.55)
    rim = binding and rng.random() < 0.7  # (draws nothing for plain cloth: its seeded masks stay as they were)
    if rim:
        rim_rgb, rim_w = _jitter_color(rng, _pick(rng, palette), 10), rng.uniform(0.04, 0.08)

    def paint(x, y, s, t, edge, px):
        color = _fill(x, base) if kind == "solid" else _pattern(x, y, rng, px, kind, base)
        nx, ny = _wrap_normal(s, t, across=0.85 if contoured else 0.75)
        if contoured:  # two panels meeting at a ridge over the nose and chin
            nx = nx + 0.25 * np.tanh(s * 6)
        else:
            phase = np.mod(t * 3.2 - 0.6, 1.0)
            ny = ny + 0.3 * (phase - 0.5) * (t > 0.15) * (t < 0.9)
        shade = _lambert(nx, ny, light, ambient)
        shade = shade * (1 + 0.12 * (_value_noise(x, y, rng, 4.6) - 0.5))  # soft wrinkles
        if contoured:
            shade = shade * (1 - 0.25 * _band(s * shape.half_width(t), 0.01, px))  # the stitched seam
        shade = shade * (1 - 0.1 * _band(edge, 0.06, px))
        if rim:  # bias binding sewn over the edge: a band of another colour all round
            color = _mix(color, rim_rgb, np.clip((rim_w - edge) * px + 0.5, 0, 1))
        return color * shade[..., None]

    loop_rgb = base if rng.random() < 0.6 else _jitter_color(rng, _pick(rng, [(30, 30, 30), (235, 235, 235)]), 6)
    return _Design(shape, paint, _ear_loops(shape, rng), rng.uniform(0.033, 0.06), loop_rgb)


def _printed(rng: np.random.Generator, low: float) -> _Design:
    """A printed fabric mask: any colour (yellow, red, pink, black ...), always a print, often a bound edge."""
    return _cloth(rng, low, PRINT_KINDS, CLOTH_COLORS + BRIGHT_COLORS * 2, binding=True)


def _knit(rng: np.random.Generator, low: float) -> _Design:
    """A knitted mask: columns of V stitches, a ribbed band at the top and bottom, thick yarn loops."""
    design = _cloth(rng, low, ["solid"], CLOTH_COLORS + BRIGHT_COLORS)
    fabric = design.paint
    column, row = rng.uniform(0.07, 0.12), rng.uniform(0.05, 0.08)
    rib = rng.uniform(0.1, 0.18)

    def paint(x, y, s, t, edge, px):
        q = np.mod(x / column, 1.0) - 0.5
        stitch = np.mod(y / row + 1.2 * np.abs(q), 1.0)  # chevrons: each stitch is a V
        relief = 0.18 * (np.abs(q) * 2 - 0.5) + 0.12 * (stitch - 0.5)
        relief = np.where(edge < rib, 0.25 * np.cos(2 * np.pi * x / (column * 0.8)), relief)  # vertical ribs
        return fabric(x, y, s, t, edge, px) * (1 + relief)[..., None]

    design.paint = paint
    design.string_width *= 1.6
    return design


def _n95(rng: np.random.Generator, low: float) -> _Design:
    """A moulded cup respirator: an oval dome, a welded rim, a nose clip, head straps, sometimes a valve."""
    top, bottom = rng.uniform(0.13, 0.29) + low, rng.uniform(2.05, 2.2)
    center = top + rng.uniform(0.45, 0.55) * (bottom - top)
    q = rng.uniform(2.2, 2.8)  # superellipse: a little boxier than an ellipse
    arc = lambda s: (1 - np.abs(s) ** q) ** (1 / q)
    shape = _Shape(top=lambda s: center - (center - top) * arc(s), bottom=lambda s: center + (bottom - center) * arc(s),
                   width=(rng.uniform(1.1, 1.23),) * 2)
    base = _jitter_color(rng, _pick(rng, RESPIRATOR_COLORS), 5)
    light, ambient = _light(rng), rng.uniform(0.35, 0.5)
    nose_clip = rng.random() < 0.7

    def paint(x, y, s, t, edge, px):
        nx, ny = s * 0.9, (t - 0.55) * 1.1  # a dome: the sides and the bottom turn away from the camera
        shade = _lambert(nx, ny, light, ambient)
        shade = shade * (1 + 0.08 * (_value_noise(x, y, rng, 23) - 0.5))  # non-woven fibres
        shade = shade * (1 - 0.12 * _band(edge - 0.05, 0.016, px))  # the welded rim line
        color = _fill(x, base) * shade[..., None]
        if nose_clip:  # aluminium nose clip
            metal = _band(edge - 0.065, 0.04, px) * _band(x, 0.29, px) * (t < 0.3)
            color = _mix(color, np.array([200, 202, 206], np.float32) * 0.95, metal * 0.8)
        return color

    strap_rgb = _jitter_color(rng, _pick(rng, STRAP_COLORS), 8)
    strap_w = rng.uniform(0.065, 0.105)
    w = shape.width[0]
    strings = []
    u = np.linspace(0, 1, 8)[:, None]
    for side in (-1, 1):
        # The head straps leave the cup's sides and curve back over the cheek (above and below the ear),
        # disappearing behind the head at the face outline.
        for start_y, end_y in ((center - 0.38, rng.uniform(0.07, 0.31)), (center + 0.38, rng.uniform(1.45, 1.7))):
            start, end = np.array([side * w * 0.9, start_y]), np.array([side * 1.55, end_y])
            bend = np.array([side * 1.44, start_y + (end_y - start_y) * 0.3])
            strings.append((1 - u) ** 2 * start + 2 * u * (1 - u) * bend + u ** 2 * end)
    parts = []
    if rng.random() < 0.4:
        parts.append(_valve(rng, rng.choice([-1, 1]) * rng.uniform(0.46, 0.66), center + rng.uniform(0.06, 0.31)))
    return _Design(shape, paint, strings, strap_w, strap_rgb, parts)


def _valve(rng: np.random.Generator, cx: float, cy: float) -> tuple:
    """An exhalation valve: a round or rounded-square plastic cap with slits."""
    r = rng.uniform(0.29, 0.39)
    angle = np.linspace(0, 2 * np.pi, 33)[:-1]
    p = 2.0 if rng.random() < 0.5 else 4.0
    superellipse = lambda c: np.sign(c) * np.abs(c) ** (2 / p)
    polygon = np.stack([cx + r * superellipse(np.cos(angle)), cy + r * 0.95 * superellipse(np.sin(angle))], 1)
    rgb = _jitter_color(rng, _pick(rng, VALVE_COLORS), 6)
    light = _light(rng)

    def paint(x, y, px):
        u, v = (x - cx) / r, (y - cy) / r
        radius = (np.abs(u) ** p + np.abs(v) ** p) ** (1 / p)
        shade = _lambert(u * 0.6, v * 0.6, light, 0.45)
        shade = shade * (1 - 0.35 * _band(radius - 0.78, 0.05, px * r))  # the raised rim
        slits = _stripes(v, 0.22, 0.3, px * r) * (radius < 0.6)
        shade = shade * (1 - 0.45 * slits)
        return _fill(x, rgb) * shade[..., None]

    return polygon, paint


def _kn95(rng: np.random.Generator, low: float) -> _Design:
    """A folded KN95: two flat panels meeting at a vertical seam, a pointed top and chin, welded edges."""
    peak, top_side = rng.uniform(0.17, 0.29) + low, rng.uniform(0.5, 0.63) + low * 0.8
    chin, bottom_side = rng.uniform(2.17, 2.35), rng.uniform(1.44, 1.6)
    shape = _Shape(top=lambda s: peak + (top_side - peak) * np.abs(s) ** 0.85,
                   bottom=lambda s: chin + (bottom_side - chin) * np.abs(s) ** 1.35,
                   width=(rng.uniform(1.36, 1.47), rng.uniform(1.23, 1.31)))
    base = _jitter_color(rng, _pick(rng, RESPIRATOR_COLORS), 5)
    light, ambient = _light(rng), rng.uniform(0.35, 0.5)

    def paint(x, y, s, t, edge, px):
        nx = 0.45 * s + 0.35 * np.tanh(s * shape.half_width(t) * px)  # each panel is flat; the crease is sharp
        ny = (t - 0.45) * 0.8
        shade = _lambert(nx, ny, light, ambient)
        shade = shade * (1 + 0.06 * (_value_noise(x, y, rng, 23) - 0.5))
        seam = _band(s * shape.half_width(t), 0.013, px)
        dots = 0.5 + 0.5 * np.sin(x * 2 * np.pi / max(0.045, 3 / px)) * np.sin(y * 2 * np.pi / max(0.045, 3 / px))
        weld = _band(edge - 0.065, 0.024, px) * (0.6 + 0.4 * dots)  # the embossed welded border
        shade = shade * (1 - 0.25 * seam) * (1 - 0.15 * weld)
        return _fill(x, base) * shade[..., None]

    loop_rgb = _jitter_color(rng, (238, 238, 236) if base.mean() > 100 else (30, 30, 32), 6)
    return _Design(shape, paint, _ear_loops(shape, rng), rng.uniform(0.04, 0.06), loop_rgb)


def _gaiter(rng: np.random.Generator, low: float, bandana: bool | None = None) -> _Design:
    """A neck gaiter pulled up over the nose, or (`bandana`, default at random) a bandana tied behind the head."""
    top_c, top_side = rng.uniform(0.19, 0.34) + low, rng.uniform(0.38, 0.54) + low * 0.8
    top = lambda s: top_side + (top_c - top_side) * (1 - np.abs(s) ** 1.6)
    coin = rng.random() < 0.35
    bandana = coin if bandana is None else bandana
    if bandana:  # a triangle hanging to a point below the chin
        tip, side = rng.uniform(2.51, 2.89), rng.uniform(1.57, 1.82)
        shape = _Shape(top=top, bottom=lambda s: tip + (side - tip) * np.abs(s),
                       width=(rng.uniform(1.44, 1.55), rng.uniform(1.6, 1.77)))
        base = _jitter_color(rng, _pick(rng, BANDANA_COLORS if coin else BANDANA_COLORS + BRIGHT_COLORS), 8)
        kind = _pick(rng, ["florals", "dots", "florals", "solid"] if coin else PRINT_KINDS)
    else:  # a tube: over the cheeks, in at the neck, down out of the picture
        shape = _Shape(top=top, bottom=lambda s: np.full_like(s, 3.45), width_t=(0.0, 0.4, 0.6, 1.0),
                       width=(rng.uniform(1.41, 1.52), rng.uniform(1.31, 1.39), rng.uniform(1.02, 1.15),
                              rng.uniform(1.11, 1.31)))
        base = _jitter_color(rng, _pick(rng, GAITER_COLORS), 8)
        kind = _pick(rng, ["solid", "solid", "camo", "noise", "stripes", "camo"])
    light, ambient = _light(rng), rng.uniform(0.4, 0.55)
    period, amp = rng.uniform(0.15, 0.28), rng.uniform(0.08, 0.16)

    def paint(x, y, s, t, edge, px):
        color = _fill(x, base) if kind == "solid" else _pattern(x, y, rng, px, kind, base)
        nx, ny = s * 0.9, np.clip(y - 1.19, -0.63, 1.0) * 0.24
        shade = _lambert(nx, ny, light, ambient)
        shade = shade * (1 + 0.1 * (_value_noise(x, y, rng, 3.9) - 0.5))  # loose knit: uneven tension
        # Stretch fabric bunches into horizontal folds below the chin; a bandana drapes in diagonal folds.
        wobble = 0.25 * _value_noise(x, y, rng, 2.3)
        if bandana:
            folds = np.sin(2 * np.pi * ((y + 0.57 * np.abs(x)) / (period * 2) + wobble))
            shade = shade * (1 + amp * 0.7 * folds * np.clip((y - 1.32) / 1.25, 0, 1))
        else:
            folds = np.sin(2 * np.pi * (y / period + wobble))
            shade = shade * (1 + amp * folds * np.clip((y - 1.57) * 1.6, 0, 1))
            shade = shade * (1 - 0.3 * np.clip(1 - np.abs(y - 2.26) / 0.19, 0, 1))  # shadow under the chin
        shade = shade * (1 - 0.12 * _band(edge, 0.065, px))  # folded-over top hem
        return color * shade[..., None]

    return _Design(shape, paint)


def _bandana(rng: np.random.Generator, low: float) -> _Design:
    """A bandana or scarf tied behind the head, in any colour and print."""
    return _gaiter(rng, low, bandana=True)


def _respirator(rng: np.random.Generator, low: float) -> _Design:
    """A half-face elastomeric respirator: a rubber face piece, two filter cartridges on the cheeks, head straps."""
    top, bottom = rng.uniform(0.1, 0.25) + low * 0.5, rng.uniform(1.95, 2.15)
    center = top + 0.5 * (bottom - top)
    arc = lambda s: (1 - np.abs(s) ** 2.2) ** (1 / 2.2)
    shape = _Shape(top=lambda s: center - (center - top) * arc(s) - 0.08 * np.exp(-(s / 0.25) ** 2),
                   bottom=lambda s: center + (bottom - center) * arc(s), width=(rng.uniform(1.0, 1.12),) * 2)
    base = _jitter_color(rng, _pick(rng, [(40, 40, 44), (60, 62, 66), (70, 100, 150), (200, 190, 170), (230, 120, 160)]), 6)
    light, ambient = _light(rng), rng.uniform(0.35, 0.5)

    def paint(x, y, s, t, edge, px):
        shade = _lambert(s * 0.9, (t - 0.55) * 1.1, light, ambient)
        shade = shade * (1 - 0.2 * _band(edge - 0.06, 0.02, px))  # the moulded rim of the face seal
        return _fill(x, base) * shade[..., None]

    cartridge_rgb = _jitter_color(rng, _pick(rng, CARTRIDGE_COLORS), 8)
    r, cy = rng.uniform(0.42, 0.55), center + rng.uniform(0.2, 0.45)
    spread = rng.uniform(0.85, 1.05)
    parts = [_cartridge(rng, side * spread, cy, r, cartridge_rgb) for side in (-1, 1)]
    if rng.random() < 0.6:  # the exhalation valve under the chin
        parts.append(_valve(rng, 0.0, bottom - rng.uniform(0.35, 0.45)))
    strap_w = rng.uniform(0.07, 0.11)
    u = np.linspace(0, 1, 8)[:, None]
    strings = []
    for side in (-1, 1):
        for start_y, end_y in ((center - 0.5, rng.uniform(0.0, 0.25)), (bottom - 0.3, rng.uniform(1.5, 1.8))):
            start, end = np.array([side * 0.9, start_y]), np.array([side * 1.55, end_y])
            strings.append((1 - u) * start + u * end)
    return _Design(shape, paint, strings, strap_w, _jitter_color(rng, (40, 40, 42), 8), parts, clip_parts=False)


def _cartridge(rng: np.random.Generator, cx: float, cy: float, r: float, rgb) -> tuple:
    """A round filter cartridge seen a little from the side: a foreshortened disc with a rim and ribs."""
    squash = rng.uniform(0.7, 0.85)
    angle = np.linspace(0, 2 * np.pi, 33)[:-1]
    polygon = np.stack([cx + r * squash * np.cos(angle), cy + r * np.sin(angle)], 1)
    light = _light(rng)

    def paint(x, y, px):
        u, v = (x - cx) / (r * squash), (y - cy) / r
        radius = np.hypot(u, v)
        shade = _lambert(u * 0.5, v * 0.5, light, 0.5)
        shade = shade * (1 - 0.35 * _band(radius - 0.86, 0.06, px * r))  # the rim
        shade = shade * (1 - 0.2 * _stripes(radius, 0.18, 0.25, px * r) * (radius < 0.7))  # concentric ribs
        return _fill(x, rgb) * shade[..., None]

    return polygon, paint


def _light(rng: np.random.Generator) -> np.ndarray:
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.7, -0.05), 1.0])
    return light / np.linalg.norm(light)


_STYLES = {"surgical": _surgical, "cloth": _cloth, "n95": _n95, "kn95": _kn95, "gaiter": _gaiter,
           "printed": _printed, "knit": _knit, "respirator": _respirator, "bandana": _bandana}


# ---------------------------------------------------------------- placement and compositing

def _landmarks_or_template(landmarks: np.ndarray | None, w: int, h: int) -> np.ndarray:
    """The 5 landmarks as float64 5×2 pixels; None: the aligned-crop template on a w×h picture."""
    if landmarks is None:
        landmarks = TEMPLATE_LANDMARKS * np.array([w, h], np.float32)
    return np.asarray(landmarks, np.float64).reshape(5, 2)


def _pixels_per_unit(frame: np.ndarray) -> float:
    """Pixels per mask unit of an affine frame (2×3 or 3×3): the square root of its linear part's area scale."""
    return float(np.sqrt(abs(np.linalg.det(frame[:2, :2]))))


def _face_frame(landmarks: np.ndarray) -> np.ndarray:
    """2×3 least-squares affine: mask coordinates → pixels of the face with these 5 landmarks."""
    design = np.concatenate([CANONICAL_LANDMARKS, np.ones((5, 1))], 1)
    return np.linalg.lstsq(design, landmarks.astype(np.float64), rcond=None)[0].T


def _placement(landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """3×3 matrix: mask coordinates → pixels. The face's affine frame from the landmarks, plus jitter."""
    frame = _face_frame(landmarks)
    angle = np.deg2rad(rng.normal(0, 3.0))
    scale = rng.uniform(0.94, 1.07)
    sx = scale * rng.uniform(0.96, 1.06)
    pivot = np.array([0.0, 0.69])  # rotate and scale about the nose
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.diag([sx, scale])
    shift = pivot - rot @ pivot + rng.normal(0, [0.046, 0.05])
    jitter = np.eye(3)
    jitter[:2, :2], jitter[:2, 2] = rot, shift
    return np.vstack([frame, [0, 0, 1]]) @ jitter


def _draw_layer(shapes, box, size) -> np.ndarray:
    """Coverage in [0, 1] of polygons/polylines (pixel coordinates) over the pixel box, drawn supersampled."""
    x0, y0 = box
    canvas = Image.new("L", (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    for points, width in shapes:
        xy = [((px - x0) * SUPERSAMPLE - 0.5, (py - y0) * SUPERSAMPLE - 0.5) for px, py in points]
        if width is None:
            draw.polygon(xy, fill=255)
        else:
            draw.line(xy, fill=255, width=max(1, round(width * SUPERSAMPLE)), joint="curve")
    return np.asarray(canvas.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0


def render_mask(face: np.ndarray, rng: int | np.random.Generator, style: str | None = None,
                landmarks: np.ndarray | None = None, styles: Sequence[str] = MASK_STYLES,
                raise_by: float = 0.0) -> RenderedMask:
    """Draw a random mask of `style` (or one of `styles`) on `face` (H×W×3 uint8), placed from its landmarks.

    `landmarks`: the 5 points in pixels (eyes, nose tip, mouth corners), default the aligned-crop template.
    `raise_by`: the top edge that much higher, in mask units (up the nose bridge and over the cheekbones, as masks
    pulled up high are worn); a mask drawn worn below the nose ignores it.
    The same `rng` seed gives the same bytes. The returned map is exactly the pixels that changed.
    """
    face = np.asarray(face)
    if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8:
        raise ValueError(f"face must be an H×W×3 uint8 array, got {face.shape} {face.dtype}")
    rng = np.random.default_rng(rng)
    h, w = face.shape[:2]
    if style is None:
        style = styles[rng.integers(len(styles))]
    if style not in _STYLES:
        raise ValueError(f"Unknown mask style {style!r}; choose from {WORLD_STYLES}")
    landmarks = _landmarks_or_template(landmarks, w, h)

    low = rng.uniform(0.36, 0.48) if rng.random() < LOW_PROBABILITY else -raise_by
    design = _STYLES[style](rng, low)
    to_pixels = _placement(landmarks, rng)
    project = lambda pts: pts @ to_pixels[:2, :2].T + to_pixels[:2, 2]
    px = _pixels_per_unit(to_pixels)

    outline = project(design.shape.outline())
    strings = [(project(pts), design.string_width * px) for pts in design.strings]
    parts = [(project(poly), paint) for poly, paint in design.parts]
    points = np.concatenate([outline] + [p for p, _ in strings] + [p for p, _ in parts])
    margin = design.string_width * px + 2
    x0, y0 = np.clip(np.floor(points.min(0) - margin).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(points.max(0) + margin).astype(int), 0, [w, h])
    if x1 <= x0 or y1 <= y0:  # the mask lies entirely outside the picture
        return RenderedMask(face.copy(), np.zeros((h, w), np.uint8), style)
    box, size = (x0, y0), (x1 - x0, y1 - y0)

    # Mask coordinates of every pixel centre in the box.
    inverse = np.linalg.inv(to_pixels).tolist()  # Python floats keep the pixel grids float32
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32) + 0.5, np.arange(y0, y1, dtype=np.float32) + 0.5)
    mx = inverse[0][0] * gx + inverse[0][1] * gy + inverse[0][2]
    my = inverse[1][0] * gx + inverse[1][1] * gy + inverse[1][2]

    region = face[y0:y1, x0:x1].astype(np.float32)
    body_alpha = _draw_layer([(outline, None)], box, size)
    s, t, edge = design.shape.surface(mx, my)
    color = design.paint(mx, my, s, t, edge, px)
    layers = [(body_alpha, color)]
    under = 1 - body_alpha  # where strings show: beside the mask (and beside cartridges that stick out)
    for poly, paint in parts:
        alpha = _draw_layer([(poly, None)], box, size)
        if design.clip_parts:
            alpha = alpha * body_alpha
        else:
            under = under * (1 - alpha)
        layers.append((alpha, paint(mx, my, px)))
    if strings:  # loops and straps lie on the face and hair, beside the mask
        layers.append((_draw_layer(strings, box, size) * under, _fill(mx, design.string_rgb) * 0.92))

    # Match the photo: a mask in a dim or tinted picture is dim or tinted too; fabric has fine grain.
    luminance = region.mean(2)[body_alpha > 0.5]
    k = int(0.9 * (luminance.size - 1))
    highlight = np.partition(luminance, k)[k] if luminance.size else 205.0  # 90th percentile: the light on the face
    exposure = np.clip(highlight / 205.0, 0.5, 1.12) ** 0.7
    tint = face.reshape(-1, 3).mean(0) + 1.0
    tint = 1 + 0.25 * (tint / tint.mean() - 1)
    grain = rng.normal(0, 2.5, size[::-1]).astype(np.float32)[..., None]

    out = region.copy()
    coverage = np.zeros(size[::-1], np.float32)
    for alpha, rgb in layers:
        rgb = np.clip(rgb * (exposure * tint).astype(np.float32) + grain, 0, 255)
        out += (rgb - out) * alpha[..., None]
        coverage = np.maximum(coverage, alpha)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)

    touched = coverage > 0
    _mark_changed(out, face[y0:y1, x0:x1], touched)
    masked = face.copy()
    masked[y0:y1, x0:x1] = np.where(touched[..., None], out, face[y0:y1, x0:x1])
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = touched * np.uint8(255)
    return RenderedMask(masked, mask, style)


def _mark_changed(out: np.ndarray, reference: np.ndarray, touched: np.ndarray) -> None:
    """The map is every pixel the mask touched; where blending happened to leave a touched pixel equal to
    `reference`, nudge it (in place) by one level so "changed" and "touched" are the same set."""
    same = touched & (out == reference).all(2)
    red = out[..., 0]
    red[same] = np.where(red[same] < 255, red[same] + 1, 254)


def add_collar(face: np.ndarray, rng: np.random.Generator, landmarks: np.ndarray | None = None) -> np.ndarray:
    """A hard negative: clothing in mask-like colours and prints right under the chin (not a mask, not in any map)."""
    h, w = face.shape[:2]
    frame = _face_frame(_landmarks_or_template(landmarks, w, h))
    neck, dip, opening = rng.uniform(1.8, 2.35), rng.uniform(0.0, 0.5), rng.uniform(0.7, 1.3)
    x = np.linspace(-5, 5, 41)
    top = neck + dip * np.clip(1 - (x / opening) ** 2, 0, None)  # crew or V-ish neckline, shoulders level
    outline = np.concatenate([np.stack([x, top], 1), [[5.0, 12.0], [-5.0, 12.0]]]) @ frame[:, :2].T + frame[:, 2]
    alpha = _draw_layer([(outline, None)], (0, 0), (w, h))
    inverse = np.linalg.inv(np.vstack([frame, [0, 0, 1]]))
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32) + 0.5, np.arange(h, dtype=np.float32) + 0.5)
    mx = (inverse[0, 0] * gx + inverse[0, 1] * gy + inverse[0, 2]).astype(np.float32)
    my = (inverse[1, 0] * gx + inverse[1, 1] * gy + inverse[1, 2]).astype(np.float32)
    px = _pixels_per_unit(frame)
    base = _jitter_color(rng, _pick(rng, SURGICAL_COLORS + CLOTH_COLORS + BRIGHT_COLORS), 10)
    kind = _pick(rng, ["solid", "solid", "stripes", "checks", "dots", "plaid", "noise"])
    color = _fill(mx, base) if kind == "solid" else _pattern(mx, my, rng, px, kind, base)
    shade = _lambert(np.clip(mx / 4, -0.8, 0.8), np.full_like(mx, -0.2), _light(rng), 0.5)
    shade = shade * (1 - 0.35 * np.clip(1 - (my - top.min()) / 0.4, 0, 1))  # the chin's shadow on the collar
    out = face.astype(np.float32)
    out += (color * shade[..., None] - out) * alpha[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


SKIN_PROBE = np.array([[-0.45, 0.55], [0.45, 0.55], [0.0, 0.4], [-0.3, 0.75], [0.3, 0.75]])  # cheeks and nose of the bare photo
HAIR_COLORS = [(20, 16, 14), (42, 30, 22), (70, 48, 30), (110, 80, 50), (180, 150, 100), (120, 120, 118)]
FRAME_COLORS = [(18, 18, 20), (40, 32, 28), (90, 60, 40), (150, 150, 155), (190, 170, 120)]
LENS_COLORS = [(12, 12, 14), (28, 30, 26), (40, 28, 22), (22, 28, 44), (60, 50, 40)]  # sunglasses: frame and lens
SUNGLASSES_SHARE = 1 / 3
OCCLUDERS = ("hand", "glasses", "cap", "hair")


def _hand(rng: np.random.Generator, skin: np.ndarray) -> tuple[list, np.ndarray]:
    """A hand raised to the face from below or the side: forearm, palm, thumb and four fingers (mask coordinates),
    each finger its own part so it is shaded apart from its neighbours. It reaches toward the mask's middle or
    only over one of its lower corners."""
    side = rng.choice([-1.0, 1.0])
    palm = np.array([side * rng.uniform(0.5, 1.7), rng.uniform(1.3, 2.3)])
    target = np.array([side * rng.uniform(0.0, 0.9), rng.uniform(0.5, 1.3)])
    toward = target - palm
    toward /= np.linalg.norm(toward)
    across = np.array([-toward[1], toward[0]])
    size = rng.uniform(0.8, 1.1)
    a = np.linspace(0, 2 * np.pi, 24)[:, None]
    arm = -toward + rng.normal(0, 0.3, 2) + [0.0, 0.6]
    arm /= np.linalg.norm(arm)
    w = 0.34 * size * np.array([-arm[1], arm[0]])
    parts = [[(np.array([palm + w, palm + w + 6 * arm, palm - w + 6 * arm, palm - w]), None)],
             [(palm + size * (0.42 * np.cos(a) * across + 0.5 * np.sin(a) * toward), None)]]
    thumb_root = palm - side * 0.3 * size * across
    thumb_tip = thumb_root + 0.55 * size * (toward - side * 0.8 * across)
    parts.append([(np.array([thumb_root, thumb_tip]), 0.22 * size)])
    bend = rng.uniform(-0.25, 0.25)
    for i, offset in enumerate(np.linspace(-0.27, 0.27, 4) * size):
        length = size * (0.7 + 0.2 * (1 - abs(i - 1.5) / 1.5)) * rng.uniform(0.55, 1.0)  # curled fingers are shorter
        root = palm + offset * across + 0.4 * size * toward
        tip_dir = toward + bend * across
        tip = root + length * (tip_dir + 0.3 * bend * across)
        parts.append([(np.array([root, root + 0.5 * length * tip_dir, tip]), 0.17 * size),
                      (tip + 0.085 * size * np.stack([np.cos(a[:, 0]), np.sin(a[:, 0])], 1), None)])  # a round tip
    return parts, _jitter_color(rng, skin * rng.uniform(0.85, 1.1), 8)


def _glasses(rng: np.random.Generator) -> tuple[list, np.ndarray]:
    """Spectacle frames: two rims, a bridge over the nose (often over the mask's top edge) and the temples; a third
    are sunglasses, larger, with dark lenses (on real photos the map took their lower halves for a dark mask)."""
    sunglasses = rng.random() < SUNGLASSES_SHARE
    half_w, half_h, y = rng.uniform(0.3, 0.42), rng.uniform(0.18, 0.27), rng.uniform(-0.02, 0.08)
    if sunglasses:
        half_w, half_h, y = half_w * 1.2, half_h * 1.8, y + 0.05
    width = rng.uniform(0.025, 0.07)
    a = np.linspace(0, 2 * np.pi, 28)
    shapes = []
    for cx in (-0.5, 0.5):
        rim = np.stack([cx + half_w * np.sign(np.cos(a)) * np.abs(np.cos(a)) ** 0.6,
                        y + half_h * np.sign(np.sin(a)) * np.abs(np.sin(a)) ** 0.6], 1)
        shapes.append((rim, None if sunglasses else width))
        outer = cx + np.sign(cx) * half_w
        shapes.append((np.array([[outer, y - 0.5 * half_h], [np.sign(cx) * 1.6, y - 0.1]]), width))
    shapes.append((np.array([[-0.5 + half_w, y - 0.2 * half_h], [0.0, y - 0.35 * half_h], [0.5 - half_w, y - 0.2 * half_h]]),
                   width))
    return shapes, _jitter_color(rng, _pick(rng, LENS_COLORS if sunglasses else FRAME_COLORS), 6)


def _cap(rng: np.random.Generator) -> tuple[list, np.ndarray]:
    """A cap or hat: crown and peak down to the brows, in any colour (dark ones make a pale mask stand out less)."""
    brim, half = rng.uniform(-0.45, -0.2), rng.uniform(1.3, 1.9)  # eyebrows are near -0.2
    x = np.linspace(-half, half, 23)
    edge = brim - rng.uniform(0.1, 0.35) * (x / half) ** 2  # the peak's edge arcs down in the middle
    u = np.linspace(0, np.pi, 25)
    crown = np.stack([half * 1.05 * np.cos(u), edge[-1] - rng.uniform(1.4, 2.2) * np.sin(u)], 1)  # the dome over the head
    outline = np.concatenate([np.stack([x, edge], 1), crown])
    return [(outline, None)], _jitter_color(rng, _pick(rng, CLOTH_COLORS + BRIGHT_COLORS + [(20, 20, 22)] * 3), 10)


def _hair(rng: np.random.Generator) -> tuple[list, np.ndarray]:
    """Strands or locks of hair falling over the cheek and the side of the mask."""
    side, shapes = rng.choice([-1.0, 1.0]), []
    for _ in range(int(rng.integers(2, 7))):
        x0 = side * rng.uniform(0.55, 1.1)
        y = np.linspace(-0.8, rng.uniform(0.8, 2.0), 10)
        x = x0 + side * rng.uniform(-0.1, 0.25) * ((y + 0.8) / 2.8) ** 2 + 0.05 * np.sin(y * rng.uniform(2, 5))
        shapes.append((np.stack([x, y], 1), rng.uniform(0.03, 0.16)))
    return shapes, _jitter_color(rng, _pick(rng, HAIR_COLORS), 8)


def _blur(alpha: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a [0, 1] float layer (sigma in pixels)."""
    image = Image.fromarray(np.rint(alpha * 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(max(sigma, 0.5))), np.float32) / 255.0


def add_occluder(photo: np.ndarray, masked: np.ndarray, mask: np.ndarray, rng: np.random.Generator, kind: str,
                 landmarks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A hard negative in front of the mask, `kind` of OCCLUDERS (a hand, glasses, a cap or hair), drawn on the photo
    and on the masked face alike. What it hides fully leaves the map; the pair stays identical outside the returned
    map."""
    h, w = photo.shape[:2]
    frame = _face_frame(_landmarks_or_template(landmarks, w, h))
    if kind not in OCCLUDERS:
        raise ValueError(f"Unknown occluder {kind!r}; choose from {OCCLUDERS}")
    if kind == "hand":
        probe = np.clip(np.rint(SKIN_PROBE @ frame[:, :2].T + frame[:, 2]).astype(int), 0, [w - 1, h - 1])
        parts, base = _hand(rng, np.median(photo[probe[:, 1], probe[:, 0]].astype(np.float32), 0))
    else:
        shapes, base = {"glasses": _glasses, "cap": _cap, "hair": _hair}[kind](rng)
        parts = [[shape] for shape in shapes]
    px = _pixels_per_unit(frame)
    light = _light(rng)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32) / px
    texture = (0.93 + 0.14 * _value_noise(gx, gy, rng, 6.0))[..., None]  # pores and blotches, not a flat cut-out
    layers = []
    for part in parts:  # each part rounded on its own: darker toward its outline, lit from the photo's light
        alpha = _draw_layer([(pts @ frame[:, :2].T + frame[:, 2], None if width is None else width * px)
                             for pts, width in part], (0, 0), (w, h))
        body = _blur(alpha, 0.05 * px)
        dy, dx = np.gradient(body)
        shade = _lambert(-dx * 0.1 * px, -dy * 0.1 * px, light, 0.45)[..., None]
        layers.append((alpha[..., None], base * shade * texture + rng.normal(0, 2.0, (h, w, 1)).astype(np.float32)))
    union = 1 - np.prod([1 - alpha for alpha, _ in layers], axis=0)
    covered = union > 0.999
    sx, sy = np.rint(-light[:2] / light[2] * 0.2 * px).astype(int)  # its shadow falls away from the light
    cast = np.pad(union[..., 0], ((abs(sy),) * 2, (abs(sx),) * 2))[abs(sy) - sy:, abs(sx) - sx:][:h, :w]
    shadow = 1 - 0.35 * _blur(cast, 0.08 * px)[..., None]
    outs = []
    for x in (photo.astype(np.float32) * shadow, masked.astype(np.float32) * shadow):
        for alpha, color in layers:
            x = x + (color - x) * alpha
        outs.append(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    photo_out, masked_out = outs[0], np.where(covered, outs[0], outs[1])  # what is hidden is the same in both
    touched = (mask == 255) & ~covered[..., 0]
    _mark_changed(masked_out, photo_out, touched)
    return photo_out, masked_out, touched * np.uint8(255)


def degrade(images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """One random photographic degradation applied identically to several images: colour cast, low light,
    blur, sensor noise, JPEG re-encoding (each with probability 1/2)."""
    out = [image.astype(np.float32) for image in images]
    if rng.random() < 0.5:  # colour cast (white balance)
        gain = np.exp(rng.normal(0, 0.08, 3)).astype(np.float32)
        out = [x * gain for x in out]
    if rng.random() < 0.5:  # low light: darker and flatter
        gain, gamma = rng.uniform(0.35, 0.8), rng.uniform(1.0, 1.4)
        out = [255 * (np.clip(x, 0, 255) / 255) ** gamma * gain for x in out]
    out = [Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8)) for x in out]
    if rng.random() < 0.5:
        radius = rng.uniform(0.4, 1.5)
        out = [x.filter(ImageFilter.GaussianBlur(radius)) for x in out]
    out = [np.asarray(x, np.float32) for x in out]
    if rng.random() < 0.5:
        noise = rng.normal(0, rng.uniform(2, 8), out[0].shape).astype(np.float32)
        out = [x + noise for x in out]
    out = [np.clip(np.rint(x), 0, 255).astype(np.uint8) for x in out]
    if rng.random() < 0.5:
        quality = int(rng.integers(25, 90))
        out = [np.asarray(_jpeg(x, quality)) for x in out]
    return out


def _jpeg(image: np.ndarray, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def make_sample(face: np.ndarray | Image.Image, seed: int, size: int, style: str | None = None,
                styles: Sequence[str] = MASK_STYLES, hard_negative_probability: float = 0.0,
                degrade_probability: float = 0.0, occluder_probability: float = 0.0,
                occluders: Sequence[str] = OCCLUDERS, high_probability: float = 0.0) -> dict:
    """One training example: the face centre-cropped square, resized to size×size, wearing a seeded random mask.

    Returns {"image": ground truth, "masked": face with mask, "mask": 'L' map 0/255, "mask_style": str}.
    The dataset builder and on-the-fly training both call this, so both give the same kind of sample.
    Options (off by default, drawn from a second stream so a seed's mask is the same with or without them):
    `hard_negative_probability`: a collar in mask-like colours under the chin, part of the photo, not the map;
    `occluder_probability`: a hand, glasses, a cap or hair in front of the mask (`add_occluder`; one of `occluders`),
    part of the photo, not the map;
    `high_probability`: the mask worn high, its top edge raised by up to `HIGH_RAISE` (on real photos masks often
    reach higher up the nose than the renderer's usual placement);
    `degrade_probability`: `degrade` applied to the photo and the masked face alike, then the masked face takes
    the degraded photo's pixels outside the map, so the pair stays identical outside the (unchanged) map.
    """
    image = face if isinstance(face, Image.Image) else Image.fromarray(np.asarray(face))
    image = image.convert("RGB")
    side = min(image.size)
    if image.size[0] != image.size[1]:
        left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.LANCZOS if side > size else Image.BICUBIC)
    options = np.random.default_rng([seed, 1])
    photo = np.asarray(image)
    if options.random() < hard_negative_probability:
        photo = add_collar(photo, options)
    raise_by = 0.0
    if high_probability > 0 and options.random() < high_probability:  # no draw when off: streams unchanged
        raise_by = options.uniform(*HIGH_RAISE)
    rendered = render_mask(photo, seed, style, styles=styles, raise_by=raise_by)
    masked, mask = rendered.masked, rendered.mask
    if occluder_probability > 0 and options.random() < occluder_probability:  # no draw when off: streams unchanged
        photo, masked, mask = add_occluder(photo, masked, mask, options, kind=_pick(options, occluders))
    if options.random() < degrade_probability:
        photo, masked = degrade([photo, masked], options)
        touched = mask == 255
        masked = np.where(touched[..., None], masked, photo)
        _mark_changed(masked, photo, touched)
    return {"image": Image.fromarray(photo), "masked": Image.fromarray(masked),
            "mask": Image.fromarray(mask, "L"), "mask_style": rendered.style}
