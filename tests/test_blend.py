"""Blending a generated patch into a photo: edge, colour, grain; nothing outside the region changes."""

import numpy as np
import pytest
from PIL import Image, ImageFilter
from skimage.data import astronaut

from unmask_hf.blend import blend_patch, dilate, erode, membrane, single_tone, to_tone, window_around
from unmask_hf.metrics import detail_ratio


@pytest.fixture(scope="module")
def skin() -> np.ndarray:
    """A smooth photo with camera-like grain (sigma 6 grey levels), 200×200."""
    smooth = np.asarray(Image.fromarray(astronaut()[:200, 200:400]).filter(ImageFilter.GaussianBlur(3)), np.float32)
    grain = np.random.default_rng(1).normal(0, 6, smooth.shape[:2])[..., None]
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def region() -> np.ndarray:
    r = np.zeros((200, 200), bool)
    r[90:170, 50:150] = True
    return r


def test_morphology():
    r = region()
    assert dilate(r, 2).sum() == 84 * 104 and erode(r, 2).sum() == 76 * 96
    assert np.array_equal(dilate(r, 0), r) and np.array_equal(erode(dilate(r, 3), 3), r)


@pytest.mark.parametrize("pixels", [1, 4, 25])
def test_dilate_is_a_square_max_filter_up_to_the_border(pixels):
    specks = np.random.default_rng(pixels).random((90, 130)) > 0.995
    specks[0, 5] = specks[89, 129] = True  # at the border too
    square = np.asarray(Image.fromarray(specks.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * pixels + 1)))
    assert np.array_equal(dilate(specks, pixels), square > 0)


def test_membrane_interpolates_the_known_values():
    known = ~region()
    values = np.zeros((200, 200, 3), np.float32)
    values[:, :, 0] = np.arange(200)[None, :]  # a ramp left to right
    values[:, :, 1] = 7
    field = membrane(values, known)
    assert np.allclose(field[known], values[known], atol=1e-4)  # exact where known
    assert np.allclose(field[..., 1], 7, atol=1e-3)  # a constant stays constant
    inside = field[90:170, 50:150, 0]
    assert inside[:, 10].mean() < inside[:, 50].mean() < inside[:, 90].mean()  # still a ramp,
    assert abs(inside[:, 50].mean() - 100) < 5 and np.abs(np.diff(inside, axis=1)).max() < 3  # smooth
    assert not membrane(values, np.zeros((200, 200), bool)).any()  # nothing known: no correction


def test_user_mask_edge_matches_colour_and_leaves_the_rest(skin):
    r = region()
    shifted = np.clip(skin.astype(int) + [30, -20, 10], 0, 255).astype(np.uint8)  # right detail, wrong colour
    out = blend_patch(skin, shifted, r, face_size=200, upscale=2, exact_edge=True)
    assert np.array_equal(out[~r], skin[~r])
    before = np.abs(shifted[r].astype(float).mean(0) - skin[r].mean(0)).mean()
    after = np.abs(out[r].astype(float).mean(0) - skin[r].mean(0)).mean()
    assert before == pytest.approx(20, abs=1) and after < 1.5
    # No seam: the step across the region's top edge is no larger than between neighbouring rows elsewhere.
    step = np.abs(out[90].astype(float) - out[89]).mean()
    assert step < 1.5 * np.abs(skin[60].astype(float) - skin[59]).mean()
    assert np.array_equal(out, blend_patch(skin, shifted, r, face_size=200, upscale=2, exact_edge=True))  # deterministic


def test_an_ear_loop_outside_the_mask_does_not_bleed_in(skin):
    r = region()
    photo = skin.copy()
    photo[100:120, 40:50] = 20  # a dark strap touching the region's left edge
    out = blend_patch(photo, skin, r, face_size=200, upscale=2, exact_edge=True)
    assert np.abs(out[100:120, 50:60].astype(float) - skin[100:120, 50:60]).mean() < 8


def test_grain_matches_the_visible_skin(skin):
    r = region()
    soft = np.asarray(Image.fromarray(skin).filter(ImageFilter.GaussianBlur(2)))  # an upscaled-looking patch
    assert detail_ratio(np.where(r[..., None], soft, skin), skin, r) < 0.4
    for exact in (True, False):
        out = blend_patch(skin, soft, r, face_size=200, upscale=2, exact_edge=exact)
        assert np.array_equal(out[~r], skin[~r])
        assert 0.5 < detail_ratio(out, skin, r) < 1.0  # most of the missing detail, never more than the photo's
    # A patch shrunk to a small face gets none; one as detailed as the photo (almost) none.
    assert detail_ratio(blend_patch(skin, soft, r, face_size=200, upscale=0.5, exact_edge=True), skin, r) < 0.4
    assert detail_ratio(blend_patch(skin, skin, r, face_size=200, upscale=2, exact_edge=True), skin, r) < 1.1


def test_predicted_map_is_feathered_inward(skin):
    r = region()
    black = np.zeros_like(skin)
    out = blend_patch(skin, black, r, face_size=200, upscale=2, exact_edge=False)
    assert np.array_equal(out[~r], skin[~r])
    assert out[90, 100].mean() > 0.5 * skin[90, 100].mean()  # the edge row is mostly photo
    assert out[130, 100].max() <= 30  # the middle is the patch (plus a little grain)
    assert np.array_equal(blend_patch(skin, black, np.zeros_like(r), 200, 2, False), skin)


def test_window_around_is_the_region_s_box_grown_and_clipped_to_the_image():
    region = np.zeros((20, 30), bool)
    region[5:9, 12:20] = True
    assert window_around(region, 0) == (slice(5, 9), slice(12, 20))
    assert window_around(region, 3) == (slice(2, 12), slice(9, 23))
    assert window_around(region, 10) == (slice(0, 19), slice(2, 30))


def test_single_tone_finds_black_and_white_photos_only(skin):
    grey = np.repeat(np.asarray(Image.fromarray(skin).convert("L"))[..., None], 3, axis=2)
    assert np.abs(single_tone(grey)).max() < 0.01
    tinted = np.clip(grey.astype(np.int16) + (6, 0, -8), 0, 255).astype(np.uint8)  # an evenly tinted (cool) print
    cb, cr = single_tone(tinted)
    assert cb < -3 and cr > 2
    assert single_tone(skin) is None and single_tone(astronaut()) is None
    # a coloured face mask in a black-and-white photo: the mask being replaced is left out
    masked = grey.copy()
    masked[90:170, 50:150] = (200, 90, 160)
    assert single_tone(masked) is None and np.abs(single_tone(masked, region())).max() < 0.01


def test_to_tone_keeps_brightness_and_sets_the_tone(skin):
    tone = np.array([-5.0, 3.0], dtype=np.float32)
    toned = to_tone(skin, tone)
    luma = lambda x: x.astype(np.float32) @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    inside = (skin.min(-1) > 10) & (skin.max(-1) < 245)  # no clipping at black or white
    assert np.abs(luma(toned) - luma(skin))[inside].max() <= 1
    assert np.abs(single_tone(toned) - tone).max() < 0.6
