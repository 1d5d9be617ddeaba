"""The editor helpers in unmask_hf.viz: mask ↔ paint layer, and fitting an image into a square canvas."""

import numpy as np
from PIL import Image

from unmask_hf.io import load_mask
from unmask_hf.viz import fit_square, mask_layer, square_box


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
