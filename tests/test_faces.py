"""Face detection (masked faces too), alignment to the training crop and paste-back, on scikit-image's astronaut."""

import runpy
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from safetensors import safe_open

from unmask_hf.faces import (BELOW_ANCHOR, BELOW_ZOOM, MTCNN_WEIGHTS, TEMPLATE_LANDMARKS, DetectedFace, FaceDetector,
                             Retry, align_face, below_matrix, map_to_photo, paste_back, reaches_below)

# The astronaut's face (512 x 512 photo): box about x 178-270, y 59-174; eyes near (204, 101) and (247, 104).
FACE_BOX = (178, 59, 270, 174)
EYES = np.array([[204, 101], [247, 104]], np.float32)
# A stand-in face mask over the nose, mouth and chin.
MASK_POLYGON = [(176, 118), (224, 110), (272, 118), (268, 160), (224, 188), (182, 160)]
PALE_BLUE = (170, 200, 230)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return w * h / (area(a) + area(b) - w * h)


def affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warps image by the 2x3 forward matrix (image pixels -> output pixels)."""
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    out = Image.fromarray(image).transform(size, Image.Transform.AFFINE, tuple(inverse.ravel()),
                                           resample=Image.Resampling.BILINEAR)
    return np.asarray(out)


def rotation(degrees: float, centre: np.ndarray) -> np.ndarray:
    t = np.deg2rad(degrees)
    r = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return np.hstack([r, (centre - r @ centre)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_weights_and_licence_ship_together():
    with safe_open(MTCNN_WEIGHTS, "pt") as f:
        assert {k.split(".")[0] for k in f.keys()} == {"pnet", "rnet", "onet"}
    licence = (MTCNN_WEIGHTS.parent / "LICENSE").read_text()
    assert "facenet-pytorch 2.6.0" in licence and "Copyright (c) 2019 Timothy Esler" in licence
    assert "Permission is hereby granted, free of charge" in licence


def test_finds_the_face_with_its_landmarks(detector, astronaut_rgb):
    faces = detector(astronaut_rgb)
    assert len(faces) == 1
    face = faces[0]
    assert iou(face.box, FACE_BOX) > 0.8 and face.score > 0.99
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
    assert np.abs(face.landmarks[:2] - EYES).max() < 4


def test_finds_a_masked_face(detector, astronaut_rgb):
    masked = Image.fromarray(astronaut_rgb)
    ImageDraw.Draw(masked).polygon(MASK_POLYGON, fill=PALE_BLUE)
    masked = np.asarray(masked)
    nose, mouth = detector(astronaut_rgb)[0].landmarks[[2, 3]].astype(int)
    assert (masked[nose[1], nose[0]] == PALE_BLUE).all() and (masked[mouth[1], mouth[0]] == PALE_BLUE).all()

    faces = detector(masked)
    assert len(faces) == 1
    assert iou(faces[0].box, FACE_BOX) > 0.8 and faces[0].score > 0.9
    assert np.abs(faces[0].landmarks[:2] - EYES).max() < 4


def test_finds_two_faces(detector, astronaut_rgb):
    canvas = np.full((400, 900, 3), 90, np.uint8)
    crop = astronaut_rgb[20:240, 120:330]
    offsets = [(50, 100), (600, 150)]  # (x, y) of each pasted crop
    for x, y in offsets:
        canvas[y:y + 220, x:x + 210] = crop
    faces = detector(canvas)
    assert len(faces) == 2
    expected = [(FACE_BOX[0] + x - 120, FACE_BOX[1] + y - 20, FACE_BOX[2] + x - 120, FACE_BOX[3] + y - 20)
                for x, y in offsets]
    assert sorted(max(iou(f.box, e) for f in faces) for e in expected)[0] > 0.8


@pytest.mark.parametrize("view", ["tight crop", "tilted 50°"])
def test_retries_find_faces_the_first_pass_misses(detector, astronaut_rgb, view):
    masked = Image.fromarray(astronaut_rgb)
    ImageDraw.Draw(masked).polygon(MASK_POLYGON, fill=PALE_BLUE)
    if view == "tight crop":  # forehead and chin cut off, the face filling the frame
        x0, y0 = 182, 84
        photo, to_photo = np.asarray(masked)[y0:172, x0:268], np.array([[1.0, 0, -x0], [0, 1, -y0]])
    else:
        to_photo = rotation(-50, np.array([256.0, 256.0]))
        photo = affine(np.asarray(masked), to_photo, (512, 512))
    assert FaceDetector(retries=())(photo) == []
    faces = detector(photo)
    assert len(faces) == 1
    assert np.abs(faces[0].landmarks[:2] - apply(to_photo, EYES)).max() < 6  # the eyes, in this photo's pixels


def test_a_mirrored_look_gives_landmarks_in_the_photo_s_own_order(detector, astronaut_rgb):
    plain = detector(astronaut_rgb)[0].landmarks
    mirrored = detector._retry(astronaut_rgb, Retry(0.25, mirror=True))
    assert len(mirrored) == 1
    assert np.abs(mirrored[0].landmarks - plain).max() < 4  # left eye still the image-left one, and so on


def face(side: float, score: float, x: float = 0.0) -> DetectedFace:
    return DetectedFace((x, 0.0, x + side, side), np.zeros((5, 2), np.float32), score)


def scripted(monkeypatch, first: list[DetectedFace], looks: list[list[DetectedFace]]) -> tuple[FaceDetector, list]:
    """A detector whose plain pass finds `first` and whose retries find `looks`, in order; `calls` lists the
    retries run."""
    detector, calls = FaceDetector(retries=tuple(Retry(k) for k in range(len(looks))), sure=0.9), []
    monkeypatch.setattr(detector, "_detect", lambda image, thresholds: first)
    monkeypatch.setattr(detector, "_retry", lambda image, retry: calls.append(retry.pad) or looks[retry.pad])
    return detector, calls


def test_the_retries_stop_at_a_sure_face_and_the_most_confident_look_wins(monkeypatch):
    image = np.zeros((100, 100, 3), np.uint8)
    sure, unsure = face(50, 0.95), face(40, 0.7)
    detector, calls = scripted(monkeypatch, [face(10, 0.6)], [[unsure], [], [sure], [face(60, 0.99)]])
    assert detector(image) == [sure] and calls == [0, 1, 2]  # unsure at first: looked again until sure
    detector, calls = scripted(monkeypatch, [face(10, 0.6)], [[unsure], [face(30, 0.65)]])
    assert detector(image) == [unsure] and calls == [0, 1]  # never sure: the most confident look
    detector, calls = scripted(monkeypatch, [sure], [[face(60, 0.99)]])
    assert detector(image) == [sure] and calls == []  # sure at once: no retries


def test_unsure_faces_much_smaller_than_a_sure_one_are_dropped(monkeypatch):
    big, sure_small = face(100, 0.95), face(30, 0.92, x=300)
    tiny_unsure, half_unsure = face(40, 0.7, x=150), face(60, 0.7, x=200)  # 0.4 and 0.6 of the sure face's side
    detector, _ = scripted(monkeypatch, [big, half_unsure, tiny_unsure, sure_small], [])
    assert detector(np.zeros((100, 100, 3), np.uint8)) == [big, half_unsure, sure_small]
    detector, _ = scripted(monkeypatch, [half_unsure, tiny_unsure], [])  # no sure face: nothing to compare with
    assert detector(np.zeros((100, 100, 3), np.uint8)) == [half_unsure, tiny_unsure]


@pytest.mark.parametrize("image", [np.full((300, 400, 3), 200, np.uint8),
                                   np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8),
                                   np.zeros((8, 8, 3), np.uint8)],
                         ids=["flat", "noise", "tiny"])
def test_no_face_gives_empty_list(detector, image):
    assert detector(image) == []


def test_align_face_puts_landmarks_on_the_template():
    # A white dot at a landmark must land on the template point: checks the matrix and the half-pixel convention.
    image = np.zeros((300, 300, 3), np.uint8)
    image[119:122, 89:92] = 255  # centre (90.5, 120.5) in continuous pixel coordinates
    size = 64
    landmarks = TEMPLATE_LANDMARKS * size * 2 + np.array([90.5, 120.5]) - TEMPLATE_LANDMARKS[0] * size * 2
    aligned = align_face(image, landmarks, size)
    assert np.allclose(apply(aligned.matrix, landmarks), TEMPLATE_LANDMARKS * size, atol=1e-3)
    assert aligned.crop.shape == (size, size, 3) and aligned.crop.dtype == np.uint8
    y, x = np.unravel_index(aligned.crop[..., 0].argmax(), (size, size))
    assert np.allclose([x + 0.5, y + 0.5], TEMPLATE_LANDMARKS[0] * size, atol=1)


@pytest.mark.parametrize("degrees", [-20, 20])
def test_rotated_faces_align(detector, astronaut_rgb, degrees):
    upright = detector(astronaut_rgb)[0].landmarks
    turn = rotation(degrees, upright.mean(0))
    rotated = affine(astronaut_rgb, turn, (512, 512))
    truth = apply(turn, upright)  # where the upright landmarks went

    faces = detector(rotated)
    assert len(faces) == 1
    assert np.abs(faces[0].landmarks - truth).max() < 5
    aligned = align_face(rotated, faces[0].landmarks, 192)
    on_crop = apply(aligned.matrix, truth)
    assert np.abs(on_crop - TEMPLATE_LANDMARKS * 192).max() < 0.04 * 192
    eye_line = on_crop[1] - on_crop[0]
    assert abs(np.degrees(np.arctan2(eye_line[1], eye_line[0]))) < 4


def test_a_large_face_aligns_like_the_same_face_small(detector, astronaut_rgb):
    # 3x bigger, the face is box-filtered down before the warp (align_face's reduce path): same crop expected.
    small = align_face(astronaut_rgb, detector(astronaut_rgb)[0].landmarks, 128)
    big_photo = np.asarray(Image.fromarray(astronaut_rgb).resize((1536, 1536), Image.Resampling.BICUBIC))
    big = align_face(big_photo, detector(big_photo)[0].landmarks, 128)
    assert np.abs(small.crop.astype(int) - big.crop.astype(int)).mean() < 8


@pytest.mark.parametrize("degrees", [0, 20])
def test_paste_back_changes_only_the_mask_region(detector, astronaut_rgb, degrees):
    photo = affine(astronaut_rgb, rotation(degrees, np.array([224.0, 120.0])), (512, 512))
    aligned = align_face(photo, detector(photo)[0].landmarks, 128)
    yy, xx = np.mgrid[:128, :128] + 0.5
    soft_mask = np.clip(1.5 - np.hypot((xx - 64) / 34, (yy - 92) / 22), 0, 1).astype(np.float32)  # soft ellipse
    edited = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)

    out, mask = paste_back(photo, edited, soft_mask, aligned.matrix)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert mask.shape == photo.shape[:2] and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    assert (out[mask == 0] == photo[mask == 0]).all()  # exactly unchanged outside
    changed = (out != photo).any(-1)
    assert changed[mask == 255].mean() > 0.8
    scale2 = abs(np.linalg.det(aligned.matrix[:, :2]))
    assert abs((mask == 255).sum() * scale2 / (soft_mask >= 0.5).sum() - 1) < 0.1  # the mask's area, warped back

    out_u8, mask_u8 = paste_back(photo, edited, np.round(soft_mask * 255).astype(np.uint8), aligned.matrix)
    assert (mask_u8 == mask).mean() > 0.999 and (out_u8[mask_u8 == 0] == photo[mask_u8 == 0]).all()
    # map_to_photo places a crop's map where paste_back pastes it (what UnmaskResult.mask reports)
    binary = soft_mask >= 0.5
    _, pasted = paste_back(photo, edited, binary.astype(np.float32), aligned.matrix)
    assert np.array_equal(map_to_photo(binary, aligned.matrix, 512, 512), pasted == 255)


def test_paste_back_at_the_photo_border(astronaut_rgb):
    # A face half outside the photo: the crop's footprint is clipped and nothing outside the region changes.
    landmarks = TEMPLATE_LANDMARKS * 100 + np.array([-40.0, 450.0])
    aligned = align_face(astronaut_rgb, landmarks, 64)
    black, full = np.zeros((64, 64, 3), np.uint8), np.ones((64, 64), np.float32)
    out, mask = paste_back(astronaut_rgb, black, full, aligned.matrix)
    assert mask[:, 60:].max() == 0 and mask[:450].max() == 0 and mask.max() == 255
    assert (out[mask == 0] == astronaut_rgb[mask == 0]).all()


def test_crop_past_the_photo_edge_continues_the_photo_mirrored(astronaut_rgb):
    """A face at the photo's edge: the crop goes on mirrored (as training's jitter does), not black; a user's
    mask (mirror=False) stays empty there; a face inside the photo gets the same crop either way."""
    flat = np.full((300, 300, 3), (180, 120, 90), np.uint8)
    landmarks = TEMPLATE_LANDMARKS * 200 + np.array([-60.0, 160.0])  # the crop's left and bottom lie outside
    assert (align_face(flat, landmarks, 64).crop == (180, 120, 90)).all()
    black = align_face(flat, landmarks, 64, mirror=False).crop
    assert (black.sum(-1) == 0).mean() > 0.3 and (black == (180, 120, 90)).all(-1).mean() > 0.3

    ramp = np.repeat(np.repeat((np.arange(300) // 2).astype(np.uint8)[:, None, None], 300, 1), 3, 2)
    column = align_face(ramp, TEMPLATE_LANDMARKS * 100 + np.array([100.0, 250.0]), 100).crop[:, 50, 0].astype(int)
    assert (np.diff(column[:48]) >= 0).all() and (np.diff(column[52:]) <= 0).all()  # the photo's last 50 rows, mirrored
    assert column.max() == 149 and column[-1] == column[0]  # up to the last row (149), then back down

    centre = TEMPLATE_LANDMARKS * 200 + np.array([150.0, 100.0])
    plain, mirrored = (align_face(astronaut_rgb, centre, 96, mirror=m).crop for m in (False, True))
    assert np.array_equal(plain, mirrored)


def test_the_below_crop_shows_the_same_face_smaller_and_reaching_lower():
    size = 100
    matrix = align_face(np.zeros((400, 300, 3), np.uint8), TEMPLATE_LANDMARKS * 120 + np.array([90.0, 60.0]), size).matrix
    lower = below_matrix(matrix, size)
    to_photo = lambda m, p: apply(np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2], np.array(p, np.float64))
    anchor = [size / 2, BELOW_ANCHOR * size]
    assert np.allclose(to_photo(lower, [anchor]), to_photo(matrix, [anchor]))  # the anchor row stays in place
    top, bottom = to_photo(matrix, [[50, 0], [50, size]]), to_photo(lower, [[50, 0], [50, size]])
    assert np.allclose(bottom[:, 0], top[:, 0])  # the centre column stays in place
    assert np.isclose((bottom[1, 1] - bottom[0, 1]) / (top[1, 1] - top[0, 1]), BELOW_ZOOM)  # a side 1.3x longer
    assert bottom[1, 1] > top[1, 1]


def test_a_map_reaches_below_only_where_the_photo_goes_on_below_the_crop():
    size = 64
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])  # the crop is the photo's top-left 64 x 64
    region = np.zeros((size, size), bool)
    region[40:, 20:40] = True  # 20 columns on the bottom row: more than BOTTOM_TOUCH of the side
    assert reaches_below(region, identity, 64, 100)
    assert not reaches_below(region, identity, 64, 64)  # the photo ends where the crop does
    narrow = np.zeros_like(region)
    narrow[40:, 30:33] = True
    assert not reaches_below(narrow, identity, 64, 100)
    above = np.zeros_like(region)
    above[20:60, 10:50] = True  # stops short of the bottom row
    assert not reaches_below(above, identity, 64, 100)


def test_marked_faces_land_on_the_template():
    from unmask_hf.faces import TEMPLATE_BOX, marked_face

    size = 200
    by_box = marked_face((400, 300), box=tuple(TEMPLATE_BOX * size + 50))
    assert np.allclose(by_box.landmarks, TEMPLATE_LANDMARKS * size + 50, atol=1e-3)
    by_eyes = marked_face((400, 300), eyes=tuple(map(tuple, TEMPLATE_LANDMARKS[1::-1] * size + 50)))
    assert np.allclose(by_eyes.landmarks, TEMPLATE_LANDMARKS * size + 50, atol=1e-3)
    assert np.allclose(by_eyes.box, TEMPLATE_BOX * size + 50, atol=1e-3)  # the box a detector would give
    assert by_box.score == by_eyes.score == 1.0


def test_a_small_face_is_pasted_at_its_own_size_without_aliasing():
    # A face about 40 px across in the photo, filled at the 128 px working size: the crop is shrunk about 3x.
    photo = np.full((200, 200, 3), 120, np.uint8)
    landmarks = TEMPLATE_LANDMARKS * 40 + np.array([80.0, 80.0])
    aligned = align_face(photo, landmarks, 128)
    checker = (np.indices((128, 128)).sum(0) % 2 * 255).astype(np.uint8)  # finest detail: 1 px checkerboard
    out, mask = paste_back(photo, np.repeat(checker[..., None], 3, 2), np.ones((128, 128), np.float32), aligned.matrix)
    inside = (mask == 255) & (np.abs(np.arange(200) - 100)[None, :] < 10) & (np.abs(np.arange(200) - 100)[:, None] < 10)
    pasted = out[inside].astype(float)
    assert inside.sum() > 300 and abs(pasted.mean() - 127.5) < 10 and pasted.std() < 25  # averaged, no moiré
    assert (out[mask == 0] == photo[mask == 0]).all()


def test_compact_faces_aligns_like_the_pipeline(tmp_path, detector, astronaut_rgb):
    convert = runpy.run_path(str(Path(__file__).resolve().parents[1] / "train" / "compact_faces.py"))["convert"]

    Image.fromarray(astronaut_rgb).save(tmp_path / "astronaut.png")
    Image.fromarray(np.full((128, 128, 3), 200, np.uint8)).save(tmp_path / "blank.png")
    out = tmp_path / "out"
    out.mkdir()
    assert convert(tmp_path / "astronaut.png", out, 64, 90, align=True)
    assert not convert(tmp_path / "blank.png", out, 64, 90, align=True)  # no face: nothing written
    assert [p.name for p in out.iterdir()] == ["astronaut.webp"]
    written = np.asarray(Image.open(out / "astronaut.webp").convert("RGB"), np.float32)
    expected = align_face(astronaut_rgb, detector(astronaut_rgb)[0].landmarks, 64).crop.astype(np.float32)
    assert np.abs(written - expected).mean() < 4  # the pipeline's crop, up to WebP


def test_a_refined_crop_still_gets_grain_where_the_model_generated_fewer_pixels():
    # A face ~100 px across pasted from a 256 px crop (a refined 2× patch): the crop is shrunk, so without
    # detail_scale no grain; said to come from a 128 px fill, the photo has more pixels than the model made.
    rng = np.random.default_rng(0)
    photo = np.clip(120 + rng.normal(0, 8, (300, 300, 1)), 0, 255).repeat(3, 2).astype(np.uint8)  # grainy skin
    aligned = align_face(photo, TEMPLATE_LANDMARKS * 200 + 50.0, 256)
    flat = np.full((256, 256, 3), 120, np.uint8)
    region = np.zeros((256, 256), np.float32)
    region[96:192, 64:192] = 1
    plain, mask = paste_back(photo, flat, region, aligned.matrix)
    grained, _ = paste_back(photo, flat, region, aligned.matrix, detail_scale=2.0)
    inside = mask == 255
    assert inside.sum() > 1000
    core = inside & (np.abs(np.arange(300) - 150)[None, :] < 15) & (np.abs(np.arange(300) - 150)[:, None] < 15)
    assert core.sum() > 100 and plain[core].std() < 0.5 and grained[core].astype(float).std() > 1.5
    assert (grained[~inside] == photo[~inside]).all()
