"""The editor helpers in unmask_hf.viz: mask ↔ paint layer, and fitting an image into a square canvas."""

import numpy as np
from PIL import Image

from unmask_hf.io import load_mask
from unmask_hf.blend import dilate, erode
from unmask_hf.viz import OVERLAY_COLOR, fit_square, mask_layer, overlay_mask, square_box


def test_mask_layer_reads_back_as_the_same_mask():
    mask = np.zeros((30, 50), np.uint8)
    mask[5:20, 10:40] = 255
    layer = mask_layer(Image.fromarray(mask))
    assert layer.mode == "RGBA" and layer.size == (50, 30)
    assert np.array_equal(np.asarray(layer)[..., 3] > 0, mask > 0)  # transparent outside the mask
    assert np.array_equal(load_mask(layer, (50, 30)), mask > 0)


def test_fit_square_centres_the_image_where_square_box_says():
    image = Image.fromarray(np.full((60, 120, 3), 200, np.uint8))  # 120 wide, 60 high
    assert square_box(image.size, 100) == (0, 25, 100, 75)
    canvas = np.asarray(fit_square(image, 100))
    assert canvas.shape == (100, 100, 3)
    assert (canvas[25:75] == 200).all() and (canvas[:25] == 0).all() and (canvas[75:] == 0).all()
    assert square_box((7, 300), 100) == (49, 0, 51, 100)  # thin images keep at least one pixel
    layer = fit_square(Image.new("RGBA", (10, 20), (255, 0, 0, 255)), 40, (0, 0, 0, 0))
    assert np.asarray(layer)[..., 3].sum(0).nonzero()[0].tolist() == list(range(10, 30))


def test_overlay_tints_and_outlines_the_mask_and_nothing_else():
    rng = np.random.default_rng(0)
    for height, width, box in ((90, 120, (slice(20, 50), slice(30, 80))), (60, 40, (slice(0, 60), slice(25, 40)))):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), bool)
        mask[box] = True
        out = np.asarray(overlay_mask(Image.fromarray(image), Image.fromarray(mask)))
        # The whole-photo definition: tint inside, a band of 1/128 of the long side around the edge.
        pixels = max(1, round(max(width, height) / 256))
        band = dilate(mask, pixels) & ~erode(mask, pixels)
        tinted = np.round(0.55 * image + 0.45 * np.array(OVERLAY_COLOR))
        assert (out[band] == OVERLAY_COLOR).all()
        assert np.abs(out[mask & ~band].astype(int) - tinted[mask & ~band]).max() <= 1
        assert np.array_equal(out[~band & ~mask], image[~band & ~mask])  # the rest is untouched
    blank = np.asarray(overlay_mask(Image.fromarray(image), Image.fromarray(np.zeros((60, 40), np.uint8))))
    assert np.array_equal(blank, image)
