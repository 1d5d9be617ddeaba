"""Malformed and hostile files (tests/corpus.py) through `load_image`, `load_mask` and the pipeline, plus a fuzzed
decode path: each gives a clear `ValueError` or a valid RGB image, never another exception, a crash or a hang."""

import faulthandler
import signal
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import EpsImagePlugin, Image

from unmask_hf.io import MAX_PIXELS, load_image, load_mask

from .app_server import EXAMPLES, ROOT, running_app  # noqa: F401  (running_app: the app on 127.0.0.1)
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
    if any("covers the whole face" in note for note in result.notes):  # refused: nothing changed
        assert expected.mean() > 0.5 and not np.asarray(result.mask).any()
        assert np.array_equal(np.asarray(result.image), np.asarray(photo))
    else:
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


# ---------------------------------------------------------------- the same files through the app's API

@pytest.fixture(scope="module")
def client(running_app, tmp_path_factory) -> Client:  # noqa: F811
    return Client(running_app.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def unmask_good_photo(client: Client) -> str:
    out = client.submit(handle_file(str(EXAMPLES / "astronaut_surgical.jpg")), "", False, 0.45, api_name="/unmask")
    return out.result(timeout=120)[6]


@pytest.mark.slow
def test_app_api_corpus(client, running_app, tmp_path):  # noqa: F811
    """Every file to /unmask, and as the drawn mask over a good photo to /unmask_with_mask: a result, or a message
    that names the upload (not a server path); afterwards the server still serves a good request."""
    photo = tmp_path / "photo.png"
    _photo(96, 64).save(photo)
    for case in CASES:
        path = tmp_path / case.name
        path.write_bytes(case.data)
        calls = {"/unmask": (handle_file(str(path)), "", False, 0.45),
                 "/unmask_with_mask": (handle_file(str(photo)), handle_file(str(path)), "", False, 0.45)}
        for api, args in calls.items():
            try:
                out = client.submit(*args, api_name=api).result(timeout=120)
            except AppError as e:
                assert case.expect in ("error", "any"), f"{api} refused {case.name}: {e}"
                assert case.name in str(e) and str(tmp_path) not in str(e) and "gradio" not in str(e), str(e)
                continue
            assert case.expect != "error", f"{api} accepted {case.name}"
            size = case.expect if api == "/unmask" else (96, 64)
            if isinstance(case.expect, tuple):
                assert Image.open(out[0]).size == size, (api, case.name)
    assert "1 face(s) unmasked" in unmask_good_photo(client)
    assert "Traceback" not in running_app.log.read_text(), running_app.log.read_text()[-3000:]


@pytest.mark.slow
def test_app_serves_only_uploads(client, running_app, tmp_path):  # noqa: F811
    """A request naming a file on the server (outside gradio's upload folder) is refused and the file is not read;
    an upload over the size limit is refused with 413; the server keeps serving."""
    api = running_app.url + "gradio_api"
    secret = running_app.log.parent / "secret.png"  # next to the app's cache folder
    Image.new("RGB", (64, 64), (0, 255, 0)).save(secret)
    cache = running_app.log.parent / "cache"
    for path in (secret, cache / ".." / "secret.png", ROOT / "app.py", EXAMPLES / "astronaut_surgical.jpg"):
        data = [{"path": str(path), "meta": {"_type": "gradio.FileData"}}, "", False, 0.45]
        event = httpx.post(f"{api}/call/unmask", json={"data": data}).json()["event_id"]
        reply = httpx.get(f"{api}/call/unmask/{event}", timeout=120).text
        assert reply.startswith("event: error") and "complete" not in reply, (path, reply[:500])
    big = httpx.post(f"{api}/upload", files={"files": ("big.png", bytes(31 * 2**20), "image/png")}, timeout=120)
    assert big.status_code == 413, big.text[:300]
    assert "1 face(s) unmasked" in unmask_good_photo(client)
