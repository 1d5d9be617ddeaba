"""Evaluation metrics on images as people see them.

Inputs: images are RGB uint8 HxWx3 arrays (or PIL images); masks are HxW arrays, bool, 0/1 or uint8 0/255
('L' images), where True/1/255 marks a face-mask pixel. Every metric returns a plain float (or a dict of them).
For model tensors, convert first (float [-1, 1] -> uint8), so validation measures what users get.

Image quality: `image_metrics` (PSNR, SSIM on the full image and in the mask's bounding box, L1 in the mask,
and `detail_ratio`: how sharp the fill is compared with the true face).
Segmentation: `mask_metrics` (IoU, Dice, pixel accuracy).
Distribution: `fd_vgg`, the Frechet distance between VGG features of two image sets (not FID: another network).
Identity (the [eval] extra, dlib): `IdentityEncoder`, `identity_distance`, `verification_scores`.
"""

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from unmask_hf import losses
from unmask_hf.blend import LUMA, erode, window_around

SAME_PERSON_THRESHOLD = 0.6  # dlib's documented decision threshold for its 128-D face descriptors


def _image(image) -> np.ndarray:
    a = np.asarray(image)
    return a[..., None] if a.ndim == 2 else a


def to_mask(mask) -> np.ndarray:
    """A bool HxW mask from bool, 0/1 or 0/255 input."""
    m = np.asarray(mask)
    if m.dtype == bool:
        return m
    if m.dtype == np.uint8 and m.max() > 1:
        return m >= 128
    return m > 0.5


def mask_bbox(mask) -> tuple[slice, slice] | None:
    """(rows, cols) slices of the mask's bounding box, or None for an empty mask."""
    m = to_mask(mask)
    return window_around(m, 0) if m.any() else None


def psnr(a, b) -> float:
    """PSNR in dB of two uint8 images (peak 255); inf when they are identical."""
    mse = np.mean((_image(a).astype(np.float64) - _image(b).astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a, b) -> float:
    """SSIM of two uint8 images (the training loss's implementation, Gaussian window, channels averaged)."""
    x, y = (torch.from_numpy(np.array(_image(im), dtype=np.float32)).permute(2, 0, 1)[None] for im in (a, b))
    with torch.no_grad():
        return float(losses.ssim(x, y, value_range=(0.0, 255.0))[0])


def _laplacian(image: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of the image's luminance (H-2)x(W-2), 'valid' positions only."""
    y = _image(image).astype(np.float64)
    y = y[..., :3] @ LUMA.astype(np.float64) if y.shape[2] >= 3 else y[..., 0]
    return y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1]


def detail_ratio(output, target, mask, erosion: int = 2) -> float:
    """Fine detail inside the mask relative to the true face: std of the Laplacian of the output over the
    mask eroded by `erosion` px (so the mask's border, a seam, does not count), divided by the same for the
    target. 1 = as sharp as the truth, below 1 = smoother (a blurry fill), above 1 = noisier. NaN when the
    eroded mask is empty or the target is flat there."""
    inner = erode(to_mask(mask), erosion)[1:-1, 1:-1]  # the Laplacian's valid positions
    if not inner.any():
        return float("nan")
    truth = _laplacian(target)[inner].std()
    return float(_laplacian(output)[inner].std() / truth) if truth > 0 else float("nan")


def image_metrics(output, target, mask) -> dict[str, float]:
    """psnr, ssim (full image); psnr_bbox, ssim_bbox (mask's bounding box); l1_mask (mean |output - target|
    over the mask's pixels, intensities in [0, 1]); detail_ratio inside the mask. The mask entries are NaN
    when the mask is empty."""
    output, target, m = _image(output), _image(target), to_mask(mask)
    out = {"psnr": psnr(output, target), "ssim": ssim(output, target)}
    box = mask_bbox(m)
    if box is None:
        return out | {"psnr_bbox": float("nan"), "ssim_bbox": float("nan"), "l1_mask": float("nan"),
                      "detail_ratio": float("nan")}
    diff = np.abs(output.astype(np.float64) - target.astype(np.float64))[m]
    return out | {
        "psnr_bbox": psnr(output[box], target[box]),
        "ssim_bbox": ssim(output[box], target[box]),
        "l1_mask": float(diff.mean() / 255.0),
        "detail_ratio": detail_ratio(output, target, m),
    }


def mask_metrics(pred, target) -> dict[str, float]:
    """iou, dice and pixel_accuracy of a predicted mask against the true one (empty vs empty counts as 1.0)."""
    p, t = to_mask(pred), to_mask(target)
    inter, union = np.logical_and(p, t).sum(), np.logical_or(p, t).sum()
    total = p.sum() + t.sum()
    return {
        "iou": float(inter / union) if union else 1.0,
        "dice": float(2 * inter / total) if total else 1.0,
        "pixel_accuracy": float((p == t).mean()),
    }


# ---------------------------------------------------------------------------- FD-VGG


def vgg_features(images: Sequence | np.ndarray, network: losses.VGGFeatures, batch_size: int = 64) -> np.ndarray:
    """(N, C) global-average-pooled features of the network's deepest layer (relu4_3 / relu4_4) for
    uint8 HxWx3 images of one size, computed on the network's device."""
    device = next(network.parameters()).device
    feats = []
    for i in range(0, len(images), batch_size):
        batch = np.stack([_image(im) for im in images[i : i + batch_size]])
        x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            feats.append(network(x)[-1].float().mean(dim=(2, 3)).cpu().numpy())
    return np.concatenate(feats).astype(np.float64)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (N, C) feature sets (N >= 2 each).

    tr sqrt(S_a S_b) is computed as tr sqrt(S_a^1/2 S_b S_a^1/2), a symmetric PSD matrix, so eigh suffices
    (no complex sqrtm, no scipy).
    """
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _sqrtm_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def fd_vgg(images_a: Sequence | np.ndarray, images_b: Sequence | np.ndarray, network: losses.VGGFeatures,
           batch_size: int = 64) -> float:
    """FD-VGG: Frechet distance between the pooled deep VGG features of two image sets. Only comparable
    between runs with the same network (network.arch) and image size; not FID (that uses Inception)."""
    return frechet_distance(vgg_features(images_a, network, batch_size), vgg_features(images_b, network, batch_size))


# ---------------------------------------------------------------------------- identity (dlib)

# dlib's face rectangle inside the project's aligned crops, as fractions of the crop side: the mean box of
# dlib's HOG detector on 300 training crops (std ~0.03). With it, embeddings of aligned crops need no detector.
FACE_BOX = (0.24, 0.29, 0.75, 0.80)


class IdentityEncoder:
    """dlib's 128-D face-recognition ResNet: faces of one person lie closer than 0.6 (Euclidean).

    Needs the [eval] extra: `pip install 'unmask-hf[eval]'` (dlib-bin, face-recognition-models).
    embed(image) expects an aligned face crop (the project's framing, any size) and places dlib's face box at
    FACE_BOX; the 5-point shape predictor then aligns the chip as dlib expects. embed(image, detect=True) finds
    the largest face in an arbitrary photo with dlib's HOG detector instead and returns None when there is none.
    """

    def __init__(self):
        try:
            import dlib
        except ImportError as e:
            raise ImportError("identity metrics need dlib: pip install 'unmask-hf[eval]' (dlib-bin)") from e
        # Locate the model files by path: importing face_recognition_models runs an __init__ that needs the
        # removed pkg_resources.
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("identity metrics need dlib's models: pip install 'unmask-hf[eval]' "
                              "(face-recognition-models)")
        models = Path(next(iter(spec.submodule_search_locations))) / "models"
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, image, detect: bool = False) -> np.ndarray | None:
        """The 128-D descriptor of the face in an RGB uint8 image (None: detect=True found no face)."""
        img = np.ascontiguousarray(np.asarray(image)[..., :3], dtype=np.uint8)
        if detect:
            faces = self._detector(img, 1)  # upsample once: finds faces down to ~40 px
            if len(faces) == 0:
                return None
            box = max(faces, key=lambda r: r.area())
        else:
            h, w = img.shape[:2]
            x0, y0, x1, y1 = FACE_BOX
            box = self._dlib.rectangle(round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h))
        return np.array(self._net.compute_face_descriptor(img, self._shape(img, box)))


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance of two face descriptors (same person below SAME_PERSON_THRESHOLD)."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def verification_scores(embeddings: np.ndarray, gallery: np.ndarray,
                        threshold: float = SAME_PERSON_THRESHOLD) -> dict[str, float]:
    """Would a face-recognition system match these faces to the person's other photos?

    embeddings: (128,) or (N, 128) descriptors of faces of one person (e.g. our outputs);
    gallery: (K, 128) descriptors of other photos of that person. Over all N*K pairs: mean_distance and
    match_rate, the fraction of pairs closer than the threshold.
    """
    e, g = np.atleast_2d(embeddings), np.atleast_2d(gallery)
    d = np.linalg.norm(e[:, None, :] - g[None, :, :], axis=-1)
    return {"mean_distance": float(d.mean()), "match_rate": float((d < threshold).mean())}
