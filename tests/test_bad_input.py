"""Malformed and hostile files (tests/corpus.py) through `load_image`, `load_mask` and the pipeline, plus a fuzzed
decode path: each gives a clear `ValueError` or a valid RGB image, never another exception, a crash or a hang."""

import faulthandler
import signal
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import EpsImagePlugin, Image

from unmask_hf.io import MAX_PIXELS, load_image, load_mask

from .conftest import make_tiny_pipeline
from .corpus import Case, _animation, _photo, _save, corpus

CASES = corpus()
VALID = [c for c in CASES if isinstance(c.expect, tuple)]


class Hang(BaseException):
    """Raised by `time_limit`; a BaseException, so no `except Exception` (or OSError, as TimeoutError is) hides it."""


@contextmanager
def time_limit(seconds: int):
    """Fail a case that runs too long: SIGALRM interrupts Python code; if a C decoder never returns to Python,
    faulthandler dumps the stacks and ends the process at three times the limit, so CI never hangs."""
    def interrupt(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(3 * seconds, exit=True)
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


def check_outcome(case: Case, load) -> Image.Image | None:
    """Run `load()`; check it matches the case: a ValueError with a message, or an RGB image of the expected size."""
    with time_limit(30):
        try:
            image = load()
        except ValueError as e:
            assert case.expect in ("error", "any"), f"{case.name}: refused a valid file: {e}"
            assert len(str(e)) > 10
            return None
    assert case.expect != "error", f"{case.name}: accepted, expected a ValueError"
    assert image.mode == "RGB"
    if isinstance(case.expect, tuple):
        assert image.size == case.expect, case.name
    return image


@pytest.fixture(scope="module")
def pipe():
    return make_tiny_pipeline()


@pytest.fixture(autouse=True)
def no_ghostscript(monkeypatch):
    """Pillow's EPS plugin runs Ghostscript on load; no user file may get that far."""
    def refuse(*args, **kwargs):
        raise Hang("an uploaded file reached Ghostscript")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_load_image_bytes(case):
    check_outcome(case, lambda: load_image(case.data))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_load_image_path(case, tmp_path):
    path = tmp_path / f"upload{case.suffix}"
    path.write_bytes(case.data)
    check_outcome(case, lambda: load_image(path))
    check_outcome(case, lambda: load_image(str(path)))


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "holiday.jpg"
    path.write_bytes(b"not a photo")
    with pytest.raises(ValueError, match="holiday.jpg.*not a JPEG, PNG, WebP, BMP, GIF or TIFF image"):
        load_image(path)
    with pytest.raises(ValueError, match="too large.*limit 50 MP"):
        load_image(next(c for c in CASES if c.name == "compressible-60mp.png").data)


def test_orientation_and_first_frame():
    """EXIF orientation 6 turns a landscape JPEG portrait; animations give their first frame (red)."""
    rotated = load_image(next(c for c in CASES if c.name == "exif-rotated.jpg").data)
    assert rotated.size == (24, 48)
    plain = _photo(48, 24)
    # The top-left of the displayed image is the bottom-left of the stored one (90° clockwise).
    assert np.abs(np.asarray(rotated, np.int16)[0, 0] - np.asarray(plain, np.int16)[-1, 0]).max() < 40
    for fmt in ("GIF", "WEBP"):
        first = np.asarray(load_image(_animation(fmt)))
        assert (first[..., 0] > 200).all() and (first[..., 1:] < 60).all(), fmt


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_pipeline(case, pipe):
    """The app's default path: find faces (none here) and return the photo unchanged, or refuse with a ValueError."""
    result = check_outcome(case, lambda: pipe(case.data).image)
    if result is not None:
        assert np.array_equal(np.asarray(result), np.asarray(load_image(case.data)))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_corpus_as_user_mask(case, pipe):
    """Every file as the drawn mask over a good photo: a valid mask (scaled to the photo) or a ValueError."""
    photo = _photo(64, 64)
    with time_limit(30):
        try:
            result = pipe(photo, aligned=True, mask=case.data)
        except ValueError as e:
            assert case.expect in ("error", "any"), f"{case.name}: refused a valid mask: {e}"
            return
    assert case.expect != "error"
    assert result.image.size == (64, 64) and result.mask.size == (64, 64)
    expected = load_mask(case.data, (64, 64))
    assert np.array_equal(np.asarray(result.mask) > 127, expected)


# ---------------------------------------------------------------- fuzzing the decode path

SEEDS = {fmt: _save(_photo(24, 16), fmt) for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")}
FUZZ = settings(max_examples=300, deadline=5000, database=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_refuses(data: bytes) -> None:
    with time_limit(20):
        try:
            image = load_image(data)
        except ValueError:
            return
    assert image.mode == "RGB" and 1 <= image.width * image.height <= MAX_PIXELS


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data):
    decodes_or_refuses(data)


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                                              min_size=1, max_size=12), st.just(1.0) | st.floats(0.05, 1.0))
def test_fuzz_mutated_images(fmt, edits, keep):
    """A valid small file with a few bytes overwritten (headers included), then cut at a random length."""
    data = bytearray(SEEDS[fmt])
    for where, value in edits:
        data[int(where * len(data))] = value
    decodes_or_refuses(bytes(data[: max(1, int(keep * len(data)))]))
