"""The app over its API: `python app.py` on 127.0.0.1 (embedded weights), called through `gradio_client`."""

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from skimage.data import coffee

from unmask_hf.io import PREDICTION_LABEL
from unmask_hf.viz import square_box

from .app_server import EXAMPLES, running_app  # noqa: F401  (the fixture: the app, running)

PHOTO = EXAMPLES / "astronaut_surgical.jpg"  # one face wearing a rendered surgical mask, 512×512
PHOTO_SIZE = (512, 512)
UNMASK = "/unmask"
WITH_MASK = "/unmask_with_mask"
FACE = "/unmask_face"
OUTPUTS = ("result", "overlay", "before_after", "gallery", "download", "editor", "status")


@pytest.fixture(scope="module")
def client(running_app, tmp_path_factory) -> Client:  # noqa: F811
    return Client(running_app.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def call(client: Client, *args, api_name: str = UNMASK) -> dict:
    return dict(zip(OUTPUTS, client.predict(*args, api_name=api_name)))


def rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_endpoints_are_named_and_documented(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(endpoints) == [UNMASK, WITH_MASK, FACE]  # helper events (opacity, editor, clicks) stay private
    assert [p["parameter_name"] for p in endpoints[UNMASK]["parameters"]] == ["image", "model", "aligned", "opacity"]
    assert [p["parameter_name"] for p in endpoints[WITH_MASK]["parameters"]] == ["image", "mask", "model", "aligned",
                                                                                 "opacity"]
    assert [p["parameter_name"] for p in endpoints[FACE]["parameters"]] == ["image", "mark_by", "points", "model",
                                                                            "opacity"]


def test_unmask_an_example_photo(client):
    out = call(client, handle_file(str(PHOTO)))
    photo = rgb(PHOTO)
    result = Image.open(out["result"])
    assert result.format == "PNG" and result.size == (512, 512)
    assert result.info["Description"] == PREDICTION_LABEL  # the statement travels with the file
    assert out["download"]["value"] == out["result"]
    changed = (np.asarray(result.convert("RGB")) != photo).any(2)
    assert 0.005 < changed.mean() < 0.2  # the mask region was filled, the rest of the photo kept
    overlay = rgb(out["overlay"])
    assert overlay.shape == photo.shape and (np.abs(overlay.astype(int) - photo).sum(2) > 30).mean() > 0.005
    before, after = out["before_after"]
    assert rgb(before).shape == rgb(after).shape == photo.shape
    assert [item["caption"] for item in out["gallery"]] == ["face 1: aligned input", "face 1: mask map", "face 1: output"]
    assert "1 face(s) unmasked" in out["status"] and PREDICTION_LABEL in out["status"]
    # The editor shows the photo with what the fill replaced as a paint layer on a square canvas.
    editor_layer = Image.open(out["editor"]["layers"][0])
    assert editor_layer.mode == "RGBA" and editor_layer.size == Image.open(out["editor"]["background"]).size
    painted = np.asarray(editor_layer.crop(square_box(PHOTO_SIZE, editor_layer.width)).resize(PHOTO_SIZE))[..., 3] > 127
    assert painted[changed].mean() > 0.95 and changed[painted].mean() > 0.8  # painted where the photo changed


def test_two_faces_are_both_unmasked(client):
    out = call(client, handle_file(str(EXAMPLES / "two_faces.jpg")))
    assert "2 face(s) unmasked" in out["status"] and len(out["gallery"]) == 6
    changed = (rgb(out["result"]) != rgb(EXAMPLES / "two_faces.jpg")).any(2)
    assert changed[:, :512].any() and changed[:, 512:].any()


def test_user_mask_changes_only_its_region(client, tmp_path):
    mask = np.zeros((512, 512), np.uint8)
    mask[120:170, 185:260] = 255  # the lower face, where the rendered mask is
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    out = call(client, handle_file(str(PHOTO)), handle_file(str(mask_path)), api_name=WITH_MASK)
    result, photo = rgb(out["result"]), rgb(PHOTO)
    assert np.array_equal(result[mask == 0], photo[mask == 0])
    assert (result[mask > 0] != photo[mask > 0]).any(1).mean() > 0.5
    assert "1 face(s) unmasked" in out["status"]


def test_a_face_the_detector_misses_can_be_marked_by_hand(client, tmp_path):
    dark = tmp_path / "dark.png"  # the example photo, too dark for the detector
    Image.fromarray(rgb(PHOTO) // 12).save(dark)
    missed = call(client, handle_file(str(dark)))
    assert "No face found" in missed["status"] and "Mark the face yourself" in missed["status"]
    for mark_by, points in (("eyes", "247, 104, 204, 101"), ("box", "178,59 270,174")):
        out = call(client, handle_file(str(dark)), mark_by, points, "", 0.45, api_name=FACE)
        assert "1 face(s) unmasked" in out["status"] and len(out["gallery"]) == 3
        changed = np.argwhere((rgb(out["result"]) != rgb(dark)).any(2))
        assert len(changed) and changed[:, 1].min() > 150 and changed[:, 1].max() < 300  # on that face only
    for points, message in (("12, 13", "Mark the face first"), ("600, 100, 650, 100", "lies off the 512x512 photo"),
                            ("100, 100, 101, 100", "too close")):
        with pytest.raises(AppError, match=message):
            call(client, handle_file(str(dark)), "eyes", points, "", 0.45, api_name=FACE)


def huge_png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width×height pixels (a decompression bomb); its pixel data is a stub."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_bad_inputs_are_clear_messages_and_the_server_keeps_serving(client, running_app, tmp_path):  # noqa: F811
    (tmp_path / "notes.txt").write_text("not a picture")
    png = io.BytesIO()
    Image.open(PHOTO).save(png, format="PNG")
    (tmp_path / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    huge_png_header(tmp_path / "huge.png", 10_000, 8_000)
    refused = {"notes.txt": "notes.txt is not a", "truncated.png": "truncated.png is not a readable image",
               "huge.png": "huge.png is too large: 10000×8000 = 80 MP (limit 50 MP)"}
    for name, message in refused.items():
        with pytest.raises(AppError, match=re.escape(message)) as error:
            call(client, handle_file(str(tmp_path / name)))
        assert "/gradio" not in str(error.value) and "Traceback" not in str(error.value)  # no server paths, no stack
    with pytest.raises(AppError, match="Draw the mask first"):
        call(client, handle_file(str(PHOTO)), None, api_name=WITH_MASK)
    with pytest.raises(AppError, match="not a Hub model id"):
        call(client, handle_file(str(PHOTO)), "/etc")  # visitors cannot load server folders as models

    Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(tmp_path / "tiny.png")
    Image.fromarray(coffee()).save(tmp_path / "no_face.png")
    for name in ("tiny.png", "no_face.png"):
        out = call(client, handle_file(str(tmp_path / name)))
        assert "Nothing was unmasked" in out["status"] and "No face found" in out["status"]
        assert np.array_equal(rgb(out["result"]), rgb(tmp_path / name))
    # ... and the next good request is served as usual; the server logged no stack trace.
    assert "1 face(s) unmasked" in call(client, handle_file(str(PHOTO)))["status"]
    assert "Traceback" not in running_app.log.read_text(), running_app.log.read_text()[-3000:]


def odd_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Valid but unusual image files made from the example photo → the (width, height) the result must have."""
    photo = Image.open(PHOTO).convert("RGB").resize((256, 256))
    photo.convert("RGBA").save(folder / "rgba.png")
    photo.convert("P").save(folder / "palette.png")
    Image.fromarray((np.asarray(photo.convert("L"), np.uint16) * 257)).save(folder / "gray16.png")
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    photo.save(folder / "animated.gif", save_all=True, append_images=[photo.rotate(90)])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: stored sideways, shown rotated 90° clockwise
    photo.crop((0, 0, 256, 192)).save(folder / "exif_rotated.jpg", exif=exif)
    sizes = {name: (256, 256) for name in ("rgba.png", "palette.png", "gray16.png", "cmyk.jpg", "animated.gif")}
    return {**sizes, "exif_rotated.jpg": (192, 256)}


def test_unusual_image_files_are_read(client, tmp_path):
    for name, size in odd_files(tmp_path).items():
        out = call(client, handle_file(str(tmp_path / name)))
        assert Image.open(out["result"]).size == size, name
