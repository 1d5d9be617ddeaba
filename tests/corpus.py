"""Malformed and hostile image files, generated in code (no binary blobs in the repo).

`corpus()` returns one `Case` per file: its bytes, the file suffix a user would give it, and what a safe loader
must do with it: `"error"` (a ValueError), a `(width, height)` it must decode to, or `"any"` (either one).
Used by tests/test_bad_input.py and the app's API tests.
"""

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

Expect = str | tuple[int, int]


@dataclass
class Case:
    """One corpus file: name, bytes, suffix and the expected outcome."""

    name: str
    data: bytes
    suffix: str
    expect: Expect


def _save(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A smooth random picture (compresses like a photo, unlike pure noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BICUBIC)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, rows: bytes | None = None, bit_depth: int = 8, color_type: int = 0,
              extra: list[tuple[bytes, bytes]] = ()) -> bytes:
    """A PNG written chunk by chunk, so the header can claim any size; `rows` are the raw filtered scanlines."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    chunks = [_png_chunk(b"IHDR", ihdr), *(_png_chunk(k, v) for k, v in extra)]
    if rows is not None:
        chunks.append(_png_chunk(b"IDAT", rows))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + _png_chunk(b"IEND", b"")


def _compressible_png(width: int, height: int) -> bytes:
    """A 1-bit all-black PNG of width×height: a few kB on disk that decode to width×height pixels."""
    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png_bytes(width, height, body, bit_depth=1)


def _flip_bytes(data: bytes, start: float, count: int = 16, seed: int = 0) -> bytes:
    """Overwrite `count` bytes from `start` (a fraction of the length) with random values."""
    rng = np.random.default_rng(seed)
    data = bytearray(data)
    at = int(len(data) * start)
    data[at:at + count] = rng.integers(0, 256, count, dtype=np.uint8).tobytes()
    return bytes(data)


def _exif_rotated_jpeg() -> bytes:
    """A 48×24 JPEG whose EXIF says 'rotate 90° clockwise to display' (orientation 6): shown as 24×48."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_photo(48, 24), "JPEG", exif=exif.tobytes())


def _huge_exif_jpeg() -> bytes:
    """A JPEG whose APP1 EXIF segment is near the 64 kB maximum (one long ImageDescription)."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 65_000
    exif[0x0112] = 1
    return _save(_photo(), "JPEG", exif=exif.tobytes())


def _huge_exif_png() -> bytes:
    """A PNG with a 5 MB eXIf chunk (PNG has no 64 kB segment limit)."""
    exif = Image.Exif()
    exif[0x010E] = "y" * 5_000_000
    exif[0x0112] = 3
    return _save(_photo(), "PNG", exif=exif.tobytes())


def _bad_orientation_jpeg() -> bytes:
    """EXIF orientation 9 (no such value) must be ignored, not crash."""
    exif = Image.Exif()
    exif[0x0112] = 9
    return _save(_photo(40, 20), "JPEG", exif=exif.tobytes())


def _text_bomb_png() -> bytes:
    """A zTXt chunk that inflates to 100 MB of text (a metadata decompression bomb)."""
    text = zlib.compress(b"a" * 100_000_000, 9)
    rows = zlib.compress((b"\x00" + bytes(8)) * 8)
    return png_bytes(8, 8, rows, extra=[(b"zTXt", b"Comment\x00\x00" + text)])


def _animation(fmt: str) -> bytes:
    """Three frames (red, green, blue); the loader must return the first (red)."""
    frames = [Image.new("RGB", (32, 24), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _bmp_claiming(width: int, height: int) -> bytes:
    """A BMP header (24-bit, uncompressed) that claims width×height, followed by a few bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + info + bytes(64)


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n%%EndComments\nnewpath 0 0 moveto showpage\n%%EOF\n"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">' \
      b'<rect width="64" height="64" fill="red"/><image href="file:///etc/passwd"/></svg>'


def corpus() -> list[Case]:
    """Every case, built fresh (about 20 MB in all; a second or two)."""
    jpeg, png, webp = _save(_photo(), "JPEG", quality=90), _save(_photo(), "PNG"), _save(_photo(), "WEBP")
    tiff = _save(_photo(), "TIFF", compression="tiff_lzw")
    gray16 = Image.fromarray((np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21))
    la = Image.fromarray(np.dstack([np.full((24, 32), 90, np.uint8), np.tile(np.arange(32, dtype=np.uint8) * 8, (24, 1))]), "LA")
    return [
        Case("valid.jpg", jpeg, ".jpg", (96, 64)),
        Case("valid.png", png, ".png", (96, 64)),
        Case("valid.webp", webp, ".webp", (96, 64)),
        Case("empty.jpg", b"", ".jpg", "error"),
        Case("truncated.jpg", jpeg[: len(jpeg) // 2], ".jpg", "error"),
        Case("header-only.jpg", jpeg[:200], ".jpg", "error"),
        Case("corrupt.jpg", _flip_bytes(jpeg, 0.6), ".jpg", "any"),
        Case("corrupt-header.jpg", _flip_bytes(jpeg, 0.05, 64), ".jpg", "any"),
        Case("truncated.png", png[: len(png) // 2], ".png", "error"),
        Case("corrupt.png", _flip_bytes(png, 0.5), ".png", "error"),  # CRC and zlib checks catch it
        Case("truncated.webp", webp[: len(webp) // 2], ".webp", "error"),
        Case("corrupt.webp", _flip_bytes(webp, 0.5), ".webp", "any"),
        Case("valid.tif", tiff, ".tif", (96, 64)),
        Case("truncated.tif", tiff[: len(tiff) // 2], ".tif", "error"),
        Case("mpo.jpg", _save(_photo(), "MPO", save_all=True, append_images=[_photo(seed=1)]), ".jpg", (96, 64)),
        Case("bmp-claims-100k-x-100k.bmp", _bmp_claiming(100_000, 100_000), ".bmp", "error"),
        Case("bmp-claims-7k-x-7k.bmp", _bmp_claiming(7_000, 7_000), ".bmp", "error"),  # under the limit, data missing
        Case("png-claims-100k-x-100k.png", png_bytes(100_000, 100_000, zlib.compress(b"\x00" * 64)), ".png", "error"),
        Case("png-claims-zero-width.png", png_bytes(0, 10, zlib.compress(b"\x00" * 64)), ".png", "error"),
        Case("compressible-60mp.png", _compressible_png(10_000, 6_000), ".png", "error"),
        Case("text-bomb.png", _text_bomb_png(), ".png", "error"),  # Pillow refuses text chunks over 1 MB
        Case("1x1.png", _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), ".png", (1, 1)),
        Case("20000x10.png", _save(_photo(20_000, 10), "PNG"), ".png", (20_000, 10)),
        Case("10x20000.jpg", _save(_photo(10, 20_000), "JPEG"), ".jpg", (10, 20_000)),
        Case("gray-16bit.png", _save(gray16, "PNG"), ".png", (64, 48)),
        Case("gray-16bit.tif", _save(gray16, "TIFF"), ".tif", (64, 48)),
        Case("rgb-16bit.png", png_bytes(4, 2, zlib.compress((b"\x00" + bytes(range(24))) * 2), bit_depth=16, color_type=2), ".png", (4, 2)),
        Case("cmyk.jpg", _save(_photo().convert("CMYK"), "JPEG"), ".jpg", (96, 64)),
        Case("palette.png", _save(_photo().convert("P"), "PNG"), ".png", (96, 64)),
        Case("palette-transparent.gif", _save(_photo().convert("P"), "GIF", transparency=0), ".gif", (96, 64)),
        Case("la.png", _save(la, "PNG"), ".png", (32, 24)),
        Case("rgba.webp", _save(_photo().convert("RGBA"), "WEBP"), ".webp", (96, 64)),
        Case("bilevel.png", _save(_photo().convert("1"), "PNG"), ".png", (96, 64)),
        Case("animated.gif", _animation("GIF"), ".gif", (32, 24)),
        Case("animated.webp", _animation("WEBP"), ".webp", (32, 24)),
        Case("exif-rotated.jpg", _exif_rotated_jpeg(), ".jpg", (24, 48)),
        Case("exif-bad-orientation.jpg", _bad_orientation_jpeg(), ".jpg", (40, 20)),
        Case("huge-exif.jpg", _huge_exif_jpeg(), ".jpg", (96, 64)),
        Case("huge-exif.png", _huge_exif_png(), ".png", (96, 64)),  # orientation 3: turned 180°
        Case("text-as.jpg", b"This is not an image, just text with a .jpg name.\n" * 20, ".jpg", "error"),
        Case("html-as.png", b"<html><script>alert(1)</script></html>", ".png", "error"),
        Case("svg.svg", SVG, ".svg", "error"),
        Case("eps-as.jpg", EPS, ".jpg", "error"),  # never handed to Ghostscript
        Case("icon.ico", _save(_photo(32, 32), "ICO"), ".ico", "error"),  # a format Pillow reads, not one we accept
        Case("svg-as.png", SVG, ".png", "error"),
        Case("zip-as.webp", b"PK\x03\x04" + bytes(100), ".webp", "error"),
    ]
