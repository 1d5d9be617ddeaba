"""Pictures for people: the mask overlay, side-by-side grids and contact sheets."""

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OVERLAY_COLOR = (255, 48, 96)


def overlay_mask(image: Image.Image, mask: Image.Image, opacity: float = 0.45,
                 color: tuple[int, int, int] = OVERLAY_COLOR, outline: bool = True) -> Image.Image:
    """The input with the mask region tinted by `color` at `opacity` and outlined in the same colour."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    region = np.asarray(mask.convert("L")) > 127
    tint = np.array(color, dtype=np.float32)
    rgb[region] = (1 - opacity) * rgb[region] + opacity * tint
    if outline and region.any():
        # Edge = mask minus its erosion, thickened with the image size so it stays visible on big photos.
        width = max(1, round(max(image.size) / 256)) * 2 + 1
        mask_l = Image.fromarray(region.astype(np.uint8) * 255)
        edge = np.asarray(mask_l.filter(ImageFilter.MaxFilter(width))) > np.asarray(mask_l.filter(ImageFilter.MinFilter(width)))
        rgb[edge] = tint
    return Image.fromarray(rgb.round().astype(np.uint8))


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
