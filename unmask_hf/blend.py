"""Blending a generated patch into a photo: the edge, the colour and the grain. Only pixels inside the region change.

- The edge. A user's mask is exact: the patch covers all of it (an inward feather would let the mask's rim show
  through as a pale seam), and a smooth correction field hides the edge: it equals photo - patch on the ring of
  visible pixels just outside the region and is interpolated inside (a membrane, as in Poisson / seamless
  cloning, here by push-pull over a pyramid, O(pixels)), so the colour matches the cheeks all along the edge and
  the patch keeps its own detail. The map module's mask is not exact (a little too large or too small), and
  there a feather inward from its (grown) edge measured better than the membrane, whose ring then partly lies on
  the mask or on skin the model redrew (benchmarks/photo_fill.py, numbers in the README).
- The grain. The models work at 128 px, so a patch upscaled to a 300-500 px face is smoother than the photo:
  Gaussian grain brings its fine-detail level up to that of the visible skin around it.
- The tone. The models paint skin colour; in a black-and-white (or evenly tinted) photo the pipeline gives what
  it changed the photo's own single tone instead, keeping its brightness (`single_tone`, `to_tone`).
"""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

# Ring pixels where photo and patch differ by more than this (mean over channels, 0-255) are not skin the patch
# should match: ear loops, straps, fabric just outside the region. They are left out of the correction.
MAX_DIFFERENCE = 40.0
# Share of the missing fine detail that grain fills, and its ceiling (grey levels): full matching looked like
# speckle on JPEG-noisy photos of the real-photo contact sheet.
GRAIN_SHARE, MAX_GRAIN = 0.7, 4.0
FEATHER = 0.015  # of the face crop's side: the blur that feathers a predicted map's edge inward
# YCbCr (JPEG's): the luma row, the two chroma rows, and chroma back to RGB offsets.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
CHROMA = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32)
CHROMA_TO_RGB = np.array([[0.0, 1.402], [-0.344136, -0.714136], [1.772, 0.0]], dtype=np.float32)
# Mean distance (grey levels) of a photo's chroma from its median under which the photo is one tone. Among the 400
# real dev photos, outside what the pipeline changed: 0.00 and 0.01 for the two greyscale ones, 0.24 for a
# greyscale one with a pink mask, 0.47 for a black-and-white cartoon print; 0.75 and up for the rest (a
# desaturated photo whose skin keeps a little colour, then the colour photos).
MONOCHROME_SPREAD = 0.5


def _skin_band(face_size: float) -> int:
    """Pixels around the region where the visible skin's grain is measured: 5 % of the face crop's side."""
    return max(round(0.05 * face_size), 3)


def dilate(region: np.ndarray, pixels: int) -> np.ndarray:
    """Grow an H×W bool region by `pixels` in every direction (a square structuring element)."""
    region = np.asarray(region, dtype=bool)
    if pixels <= 0:
        return region.copy()
    # A pixel is in the grown region when the (2p+1)² box around it holds a region pixel: box sums from a summed-area
    # table cost the same at any size, where a max filter costs O(p²) per pixel, and the skin band of a face filling
    # a 1 MP photo is 50 px wide (blend_patch).
    side = 2 * pixels + 1
    table = np.pad(region, ((pixels + 1, pixels), (pixels + 1, pixels))).astype(np.int32).cumsum(0).cumsum(1)
    return (table[side:, side:] - table[:-side, side:] - table[side:, :-side] + table[:-side, :-side]) > 0


def window_around(region: np.ndarray, reach: int) -> tuple[slice, slice]:
    """Rows and columns of a non-empty H×W bool region's bounding box grown by `reach` px on every side, clipped to
    the image: all that an edit of the region reading `reach` px around it needs (cheap on a large photo)."""
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    return (slice(max(rows[0] - reach, 0), min(rows[-1] + reach + 1, region.shape[0])),
            slice(max(cols[0] - reach, 0), min(cols[-1] + reach + 1, region.shape[1])))


def erode(region: np.ndarray, pixels: int) -> np.ndarray:
    """Shrink an H×W bool region by `pixels` in every direction."""
    return ~dilate(~np.asarray(region, dtype=bool), pixels)


def membrane(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """A smooth H×W×C field equal to `values` where `known` (H×W bool) and interpolated elsewhere (push-pull:
    weighted averages down a pyramid, bilinear back up, each level keeping its own known share). Zero when nothing
    is known."""
    height, width = known.shape
    side = 1 << int(np.ceil(np.log2(max(height, width, 2))))  # a power of 2, so every level halves exactly
    v = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).permute(2, 0, 1)[None]
    w = torch.from_numpy(known.astype(np.float32))[None, None]
    v, w = F.pad(v * w, (0, side - width, 0, side - height)), F.pad(w, (0, side - width, 0, side - height))
    pyramid = [(v, w)]
    while pyramid[-1][1].shape[2] > 1:
        sv, sw = pyramid[-1]
        pyramid.append((F.avg_pool2d(sv, 2), F.avg_pool2d(sw, 2)))
    sv, sw = pyramid[-1]
    field = sv / sw.clamp_min(1e-8)
    for sv, sw in reversed(pyramid[:-1]):
        up = F.interpolate(field, size=sv.shape[2:], mode="bilinear", align_corners=False)
        share = sw.clamp(max=1.0)
        field = share * (sv / sw.clamp_min(1e-8)) + (1 - share) * up
    return field[0, :, :height, :width].permute(1, 2, 0).numpy()


def _fine_detail(luma: np.ndarray) -> np.ndarray:
    """The luminance minus its Gaussian blur (sigma 1 px): the grain and finest edges."""
    g = torch.exp(-torch.arange(-3, 4, dtype=torch.float32) ** 2 / 2)
    g = g / g.sum()
    x = torch.from_numpy(np.ascontiguousarray(luma, dtype=np.float32))[None, None]
    blurred = F.conv2d(F.pad(x, (3, 3, 3, 3), mode="replicate"), g.view(1, 1, 1, 7))
    blurred = F.conv2d(blurred, g.view(1, 1, 7, 1))
    return (x - blurred)[0, 0].numpy()


def _spread(values: np.ndarray) -> float:
    """Robust standard deviation (1.4826 × median absolute value): edges in the band barely move it."""
    return float(1.4826 * np.median(np.abs(values))) if values.size else 0.0


def _add_grain(patch: np.ndarray, original: np.ndarray, region: np.ndarray, skin: np.ndarray, seed: int) -> np.ndarray:
    """The patch plus luminance noise that lifts its fine detail inside `region` to that of `original` on `skin`."""
    target, current = _spread(_fine_detail(original @ LUMA)[skin]), _spread(_fine_detail(patch @ LUMA)[region])
    # White noise looks coarser than real skin texture of the same spread, so it fills the gap only partly.
    missing = min(GRAIN_SHARE * np.sqrt(max(target**2 - current**2, 0.0)), MAX_GRAIN)
    if missing < 0.5:  # grey levels: rounding to uint8 would hide it anyway
        return patch
    noise = np.random.default_rng(seed).standard_normal(region.shape).astype(np.float32)
    return patch + (missing / _spread(_fine_detail(noise))) * noise[..., None]


def blend_patch(photo: np.ndarray, patch: np.ndarray, region: np.ndarray, face_size: float, upscale: float,
                exact_edge: bool, seed: int = 0) -> np.ndarray:
    """`photo` with `patch` blended in over `region` (H×W bool); both H×W×3 uint8, the patch already at the photo's
    resolution. face_size: the face crop's side in photo pixels (it scales the feather and the skin band the grain
    is measured on, 5 % of it); upscale: photo pixels per model pixel (grain only above 1: a patch shrunk to a
    small face has all the detail its pixels can hold, and grain there is speckle). exact_edge: the region is the
    user's mask (replaced entirely, membrane at the edge); else it is a predicted map (feathered inward). Pixels
    outside the region are returned unchanged; deterministic."""
    if not region.any():
        return photo.copy()
    # Only the region changes, and only the skin band and the feather's blur around it are read: blend that window.
    reach = _skin_band(face_size) + int(np.ceil(3 * FEATHER * face_size)) + 4  # + the membrane's ring, with room
    window = window_around(region, reach)
    if region[window].shape != region.shape:
        out = photo.copy()
        out[window] = blend_patch(photo[window], patch[window], region[window], face_size, upscale, exact_edge, seed)
        return out
    original, generated = photo.astype(np.float32), patch.astype(np.float32)
    difference = original - generated
    visible = ~region & (np.abs(difference).mean(-1) < MAX_DIFFERENCE)
    if exact_edge:
        out, alpha = generated + membrane(difference, visible & dilate(region, 3)), region.astype(np.float32)
    else:
        # Blurring the region and mapping [0.5, 1] -> [0, 1] makes the weight fall to 0 at the border (a straight
        # edge blurs to 0.5 there); multiplying by the region keeps it exactly 0 outside.
        blurred = Image.fromarray(region.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(FEATHER * face_size))
        out, alpha = generated, np.clip(np.asarray(blurred) / 127.5 - 1.0, 0.0, 1.0) * region
    if upscale > 1:
        out = _add_grain(out, original, region, visible & dilate(region, _skin_band(face_size)), seed)
    blended = alpha[..., None] * np.clip(out, 0, 255) + (1 - alpha[..., None]) * original
    return np.where(region[..., None], np.round(blended), original).astype(np.uint8)


def single_tone(photo: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray | None:
    """The chroma (Cb, Cr) of an H×W×3 uint8 photo that is all one tone (black and white, or evenly tinted), else
    None. Pixels in `ignore` (H×W bool: the face mask being replaced, which may be coloured in a black-and-white
    photo) and next to it are left out."""
    step = max(1, int(np.sqrt(photo.shape[0] * photo.shape[1] / 20_000)))  # a sample: a median of 1 MP is slow
    pixels = photo[::step, ::step].reshape(-1, 3)
    if ignore is not None:
        pixels = pixels[~dilate(ignore[::step, ::step], 1).ravel()]
    if not len(pixels):
        return None
    chroma = pixels.astype(np.float32) @ CHROMA.T
    tone = np.median(chroma, axis=0)
    return tone if np.abs(chroma - tone).mean() < MONOCHROME_SPREAD else None


def to_tone(pixels: np.ndarray, tone: np.ndarray) -> np.ndarray:
    """uint8 RGB pixels (any shape ×3) with their brightness kept and their chroma set to `tone` (Cb, Cr)."""
    toned = (pixels.astype(np.float32) @ LUMA)[..., None] + CHROMA_TO_RGB @ tone
    return np.clip(np.round(toned), 0, 255).astype(np.uint8)
