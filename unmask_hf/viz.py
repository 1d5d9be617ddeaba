"""Pictures for people: the mask overlay, side-by-side grids and contact sheets."""

import numpy as np
from PIL import Image, ImageDraw

from .blend import dilate, erode, window_around

OVERLAY_COLOR = (255, 48, 96)


def overlay_mask(image: Image.Image, mask: Image.Image, opacity: float = 0.45,
                 color: tuple[int, int, int] = OVERLAY_COLOR, outline: bool = True) -> Image.Image:
    """The input with the mask region tinted by `color` at `opacity` and outlined in the same colour."""
    out = np.array(image.convert("RGB"))
    region = np.asarray(mask.convert("L")) > 127
    if not region.any():
        return Image.fromarray(out)
    # Only the mask and its outline change: work in their box, which on a large photo is a small part of it.
    pixels = max(1, round(max(image.size) / 256))  # the edge band: about 1/128 of the long side thick
    box = window_around(region, pixels + 1)
    inside, rgb = region[box], out[box].astype(np.float32)
    tint = np.array(color, dtype=np.float32)
    rgb[inside] = (1 - opacity) * rgb[inside] + opacity * tint
    if outline:
        rgb[dilate(inside, pixels) & ~erode(inside, pixels)] = tint
    out[box] = rgb.round().astype(np.uint8)
    return Image.fromarray(out)


def mask_layer(mask: Image.Image, color: tuple[int, int, int] = OVERLAY_COLOR, alpha: int = 160) -> Image.Image:
    """The mask as an RGBA paint layer for a brush editor: `color` at `alpha` inside, transparent outside.

    `alpha` stays above 127, so `io.load_mask` reads the layer back as the same mask (painted = opaque).
    """
    region = np.asarray(mask.convert("L")) > 127
    layer = np.zeros((*region.shape, 4), np.uint8)
    layer[region] = (*color, alpha)
    return Image.fromarray(layer, "RGBA")


def square_box(size: tuple[int, int], side: int) -> tuple[int, int, int, int]:
    """Where an image of `size` (width, height) lies when scaled to fit a side×side square, centred: (x0, y0, x1, y1)."""
    scale = side / max(size)
    width, height = max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
    x0, y0 = (side - width) // 2, (side - height) // 2
    return x0, y0, x0 + width, y0 + height


def fit_square(image: Image.Image, side: int, fill: tuple[int, ...] = (0, 0, 0)) -> Image.Image:
    """The image scaled to fit a side×side square of `fill`, centred (see `square_box`)."""
    x0, y0, x1, y1 = square_box(image.size, side)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image.resize((x1 - x0, y1 - y0), Image.BILINEAR), (x0, y0))
    return canvas


def image_grid(rows: list[list[Image.Image]], cell: int | None = None, labels: list[str] | None = None,
               gap: int = 2) -> Image.Image:
    """Rows of images as one contact sheet (each cell resized to `cell`², optional column labels on top)."""
    cell = cell or max(max(im.size) for row in rows for im in row)
    header = 14 if labels else 0
    cols = max(len(row) for row in rows)
    sheet = Image.new("RGB", (cols * (cell + gap) - gap, header + len(rows) * (cell + gap) - gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(labels or []):
        draw.text((c * (cell + gap) + 3, 1), label, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            sheet.paste(im.convert("RGB").resize((cell, cell), Image.BICUBIC), (c * (cell + gap), header + r * (cell + gap)))
    return sheet


def draw_points(image: Image.Image, points: list[tuple[float, float]], box: bool = False,
                color: tuple[int, int, int] = OVERLAY_COLOR) -> Image.Image:
    """A copy of `image` with `points` (x, y pixels) marked as rings, and with `box` the rectangle two of them span."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 256))
    if box and len(points) == 2:
        (x0, y0), (x1, y1) = points
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=color, width=width)
    radius = 4 * width
    for x, y in points:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=color, width=width)
    return out
