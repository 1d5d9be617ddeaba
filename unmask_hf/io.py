"""Safe image loading shared by the pipeline, the app, the CLI and the dataset tools.

Everything outside the models is RGB uint8; this module is the one place that turns whatever a user
hands us (path, bytes, PIL image, numpy array) into that, or raises a `ValueError` that says why not.
"""

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # larger images are refused before decoding (decompression bombs)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# The only decoders user bytes reach (JPEG includes MPO, the two-picture JPEGs of some phones). Pillow would
# otherwise try every plugin it has, EPS among them, which runs Ghostscript on the file when that is installed.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
PREDICTION_LABEL = "AI-generated prediction, not a photograph of this person"
ImageInput = str | Path | bytes | Image.Image | np.ndarray


class _SizeError(ValueError):
    """An image refused for its size: a clear message of our own, never wrapped."""


def _check_size(width: int, height: int, what: str) -> None:
    if width < 1 or height < 1:
        raise _SizeError(f"{what} is empty ({width}×{height} pixels)")
    if width * height > MAX_PIXELS:
        raise _SizeError(f"{what} is too large: {width}×{height} = {width * height / 1e6:.0f} MP (limit {MAX_PIXELS / 1e6:.0f} MP)")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → RGB: 16-bit scaled down, alpha composited on white, palette/CMYK/gray converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0  # 16-bit data, or 8-bit values in a wide mode
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"Expected an H×W, H×W×3 or H×W×4 array, got shape {array.shape}")
    _check_size(array.shape[1], array.shape[0], "Image array")
    if array.dtype == np.uint8:
        pass
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError("Float image arrays must hold finite values in [0, 1]")
        array = (array * 255 + 0.5).astype(np.uint8)
    elif array.dtype == np.uint16:
        array = (array.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    else:
        raise ValueError(f"Unsupported image array dtype {array.dtype} (use uint8, uint16 or float in [0, 1])")
    return Image.fromarray(np.ascontiguousarray(array))


def load_image(source: ImageInput) -> Image.Image:
    """Open a path, bytes, PIL image or array as an RGB PIL image (EXIF orientation honoured, first frame of animations)."""
    return to_rgb(open_image(source))


def open_image(source: ImageInput) -> Image.Image:
    """Like `load_image`, but the decoded image keeps its own mode (alpha included)."""
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        _check_size(*source.size, "Image")
        return ImageOps.exif_transpose(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"No such image file: {path}")
        name, opener = str(path), lambda: open(path, "rb")
    elif isinstance(source, (bytes, bytearray)):
        name, opener = "Image data", lambda: io.BytesIO(source)
    else:
        raise ValueError(f"Unsupported image input of type {type(source).__name__}")
    try:
        with opener() as f, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(f, formats=FORMATS)
            _check_size(*image.size, name)  # from the header, before decoding any pixels
            image.seek(0)
            image.load()
            return ImageOps.exif_transpose(image)
    except _SizeError:
        raise
    except UnidentifiedImageError as e:
        raise ValueError(f"{name} is not a JPEG, PNG, WebP, BMP, GIF or TIFF image") from e
    except (ValueError, OSError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            EOFError, TypeError, IndexError, KeyError, ZeroDivisionError) as e:  # Pillow's ValueErrors name no file
        raise ValueError(f"{name} is not a readable image: {e}") from e


def load_mask(source: ImageInput, size: tuple[int, int]) -> np.ndarray:
    """A user-drawn mask as an H×W bool array (True = remove), resized to `size` = (width, height) if needed."""
    if isinstance(source, np.ndarray) and source.ndim == 2 and source.dtype == bool:
        source = source.astype(np.uint8) * 255
    image = open_image(source)
    if "A" in image.getbands() or "transparency" in image.info:
        image = image.convert("RGBA").getchannel("A")  # brush layers: painted where opaque
    else:
        image = to_rgb(image).convert("L")  # white = remove
    if image.size != size:
        image = image.resize(size, Image.NEAREST)
    return np.asarray(image) > 127


def images_to_tensor(images: list[Image.Image] | list[np.ndarray]) -> torch.Tensor:
    """RGB uint8 images of one size → float tensor N×3×H×W in [-1, 1] (the models' convention)."""
    array = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def tensor_to_arrays(tensor: torch.Tensor) -> np.ndarray:
    """Float tensor N×C×H×W in [-1, 1] → uint8 array N×H×W×C."""
    return ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def save_prediction_png(image: Image.Image, path: str | Path) -> None:
    """Save a model output as PNG with the AI-prediction statement in its metadata."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", PREDICTION_LABEL)
    info.add_text("Software", "unmask-hf")
    image.save(path, format="PNG", pnginfo=info)


def find_images(inputs: list[str | Path]) -> list[Path]:
    """Files and folders (searched recursively for image suffixes) → sorted list of image paths."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif item.is_file():
            found.append(item)
        else:
            raise ValueError(f"No such file or folder: {item}")
    return found
