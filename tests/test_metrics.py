import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from skimage import data
from skimage.metrics import structural_similarity
from torchvision.models.vgg import cfgs, make_layers

from unmask_hf import metrics
from unmask_hf.losses import CAFFE_NORM, VGGFeatures


def astronaut(size: int = 128) -> np.ndarray:
    return np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC))


def box_mask(size: int = 128) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[70:110, 30:100] = 255
    return mask


def test_identical_images_and_masks():
    img, mask = astronaut(), box_mask()
    m = metrics.image_metrics(img, img, mask)
    assert m["psnr"] == math.inf and m["psnr_bbox"] == math.inf
    assert m["ssim"] == pytest.approx(1.0) and m["ssim_bbox"] == pytest.approx(1.0)
    assert m["l1_mask"] == 0
    assert metrics.mask_metrics(mask, mask) == {"iou": 1.0, "dice": 1.0, "pixel_accuracy": 1.0}
    empty = np.zeros((8, 8), bool)
    assert metrics.mask_metrics(empty, empty) == {"iou": 1.0, "dice": 1.0, "pixel_accuracy": 1.0}


def test_known_shift_gives_known_psnr():
    img = np.full((32, 32, 3), 100, np.uint8)
    assert metrics.psnr(img, img + 10) == pytest.approx(20 * math.log10(255 / 10))  # 28.13 dB
    mask = np.zeros((32, 32), bool)
    mask[8:16, 8:24] = True
    shifted = img.copy()
    shifted[mask] += 10
    m = metrics.image_metrics(shifted, img, mask)
    assert m["psnr_bbox"] == pytest.approx(20 * math.log10(255 / 10))  # the bbox is exactly the mask
    assert m["psnr"] == pytest.approx(20 * math.log10(255 / 10) + 10 * math.log10(32 * 32 / (8 * 16)))
    assert m["l1_mask"] == pytest.approx(10 / 255)


def test_ssim_matches_skimage():
    a = astronaut(256)
    b = np.clip(a + np.random.default_rng(0).normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    ref = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert metrics.ssim(a, b) == pytest.approx(ref, abs=1e-4)
    assert metrics.ssim(Image.fromarray(a), Image.fromarray(b)) == pytest.approx(ref, abs=1e-4)  # PIL works too


def test_detail_ratio():
    img, mask = astronaut(), box_mask()
    blurred = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(1.5)))
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 25, img.shape), 0, 255).astype(np.uint8)
    assert metrics.detail_ratio(img, img, mask) == pytest.approx(1.0)
    assert metrics.detail_ratio(blurred, img, mask) < 0.6
    assert metrics.detail_ratio(noisy, img, mask) > 1.2
    # Only the (eroded) mask counts: blurring everything else, or a seam on the mask's border, changes nothing.
    seam = np.where(mask[..., None] > 0, img, blurred)
    seam[69:71] = 255
    assert metrics.detail_ratio(seam, img, mask) == pytest.approx(1.0)
    assert metrics.image_metrics(blurred, img, mask)["detail_ratio"] == metrics.detail_ratio(blurred, img, mask)
    tiny = np.zeros((128, 128), bool)
    tiny[60:63, 60:63] = True  # nothing left after erosion
    assert math.isnan(metrics.detail_ratio(img, img, tiny))


def test_masks_in_any_convention():
    m255 = box_mask(16)
    assert np.array_equal(metrics.to_mask(m255), metrics.to_mask(m255 // 255))
    assert np.array_equal(metrics.to_mask(m255), metrics.to_mask(m255 > 0))
    assert np.array_equal(metrics.to_mask(m255), metrics.to_mask(m255 / 255.0))
    assert metrics.mask_bbox(np.zeros((4, 4))) is None
    assert metrics.mask_bbox(box_mask()) == (slice(70, 110), slice(30, 100))


def test_mask_metrics_known_values():
    pred, target = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    pred[:2] = True  # 8 px
    target[1:3] = True  # 8 px, 4 shared
    m = metrics.mask_metrics(pred, target)
    assert m == {"iou": pytest.approx(4 / 12), "dice": pytest.approx(8 / 16), "pixel_accuracy": pytest.approx(8 / 16)}


def test_empty_mask_gives_nan_region_metrics():
    img = astronaut(32)
    m = metrics.image_metrics(img, img, np.zeros((32, 32), np.uint8))
    assert m["psnr"] == math.inf and all(math.isnan(m[k]) for k in ("psnr_bbox", "ssim_bbox", "l1_mask", "detail_ratio"))


def test_frechet_distance():
    a = np.random.default_rng(0).normal(size=(200, 16))
    assert abs(metrics.frechet_distance(a, a)) < 1e-8
    shift = np.arange(16) / 4
    assert metrics.frechet_distance(a, a + shift) == pytest.approx((shift**2).sum())  # same covariance
    b = np.random.default_rng(1).normal(scale=2.0, size=(200, 16))
    assert metrics.frechet_distance(a, b) > 1


def test_fd_vgg():
    torch.manual_seed(0)
    net = VGGFeatures(make_layers(cfgs["D"]), (3, 8), "vgg16", **CAFFE_NORM)  # random weights, 2 layers
    rng = np.random.default_rng(0)
    base = astronaut(32)
    set_a = [np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8) for _ in range(12)]
    set_b = [np.clip(base[::-1] + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8) for _ in range(12)]
    assert metrics.vgg_features(set_a, net, batch_size=5).shape == (12, 128)
    self_fd = metrics.fd_vgg(set_a, set_a, net, batch_size=5)
    other_fd = metrics.fd_vgg(set_a, set_b, net)
    assert abs(self_fd) < 1e-6 * other_fd and other_fd > 0


def test_verification_scores():
    e = np.zeros(128)
    gallery = np.zeros((4, 128))
    gallery[:, 0] = [0.1, 0.5, 0.7, 0.9]
    assert metrics.verification_scores(e, gallery) == {"mean_distance": pytest.approx(0.55), "match_rate": 0.5}
    both = metrics.verification_scores(np.stack([e, e]), gallery, threshold=0.8)
    assert both == {"mean_distance": pytest.approx(0.55), "match_rate": 0.75}
    assert metrics.identity_distance(e, gallery[1]) == pytest.approx(0.5)


# The identity tests need the [eval] extra (dlib-bin, face-recognition-models): they run, never skip.


@pytest.fixture(scope="module")
def encoder():
    return metrics.IdentityEncoder()


def astronaut_aligned_crop() -> np.ndarray:
    # The astronaut's face placed in the project's aligned-crop framing (dlib's face box at FACE_BOX).
    return np.asarray(Image.fromarray(data.astronaut()[34:205, 138:309]).resize((128, 128), Image.BICUBIC))


def test_identity_same_person(encoder):
    crop = astronaut_aligned_crop()
    e = encoder.embed(crop)
    assert e.shape == (128,)
    same = [
        encoder.embed(crop[:, ::-1]),  # mirrored
        encoder.embed(np.asarray(Image.fromarray(crop).convert("L").convert("RGB"))),  # grey
        encoder.embed(data.astronaut(), detect=True),  # the full photo, found by the detector
    ]
    distances = [metrics.identity_distance(e, s) for s in same]
    assert max(distances) < 0.4, distances  # measured 0.11 .. 0.21


def test_identity_other_people(encoder):
    e = encoder.embed(astronaut_aligned_crop())
    faces = data.lfw_subset()[:8]  # the first 100 of this bundled LFW subset are faces (25 px, grey)
    others = [np.asarray(Image.fromarray((f * 255).astype(np.uint8)).resize((128, 128), Image.BICUBIC).convert("RGB"))
              for f in faces]
    gallery = np.stack([encoder.embed(o) for o in others])
    scores = metrics.verification_scores(e, gallery)
    assert scores["match_rate"] == 0 and scores["mean_distance"] > 0.7, scores  # measured 0.69 .. 0.85


def test_identity_no_face(encoder):
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    assert encoder.embed(noise, detect=True) is None
