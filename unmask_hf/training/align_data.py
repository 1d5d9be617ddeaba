"""Training data for the landmark refiner (`LandmarkRefiner`): masked faces and where their landmarks really are.

The truth is the detector's landmarks on the *clean* photo, where MTCNN is accurate; the input is the same photo
wearing a rendered mask (every family of synth.WORLD_STYLES, with collars, hands, raised masks and degraded
photos). Rendering is done once (`train/train_aligner.py render`) and kept as one .npz. Training crops are then
cut on the fly, misaligned by a random similarity as a masked face's detection would be.
"""

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..faces import (TEMPLATE_LANDMARKS, FaceDetector, apply_affine, crop_scale, invert_affine, refine_landmarks,
                     similarity_matrix, warp_face)
from ..io import images_to_tensor, load_image
from ..synth import WORLD_STYLES, make_sample

# How far a crop is thrown off, in standard deviations of (log scale, degrees, fraction of the side): most throws
# like the usual error of MTCNN on a masked face, some like its gross failures (benchmarks/alignment.py).
USUAL_THROW, WIDE_THROW, WIDE_SHARE = (0.10, 6.0, 0.04), (0.25, 15.0, 0.10), 0.3
# Margins of a close-up's window around the face, in eye-to-mouth distances (left/right of the outer landmarks,
# above the eyes, below the mouth): half the real dev photos are cut about that tight, and the crop is then mostly
# mirrored (faces.warp_face). Trained without them, the refiner zoomed out on such crops.
TIGHT_MARGINS = ((0.2, 0.8), (0.4, 1.0), (0.4, 1.2))
FLIP_ORDER = [1, 0, 2, 4, 3]  # the landmarks of a mirrored face: left and right eye, nose, right and left mouth corner


def render_align_faces(paths: list[Path], masks_per_face: int, photo_size: int, seed: int = 0,
                       bare_fraction: float = 0.1, detect: bool = False,
                       detector: FaceDetector | None = None) -> dict[str, np.ndarray]:
    """{"images": N×P×P×3 uint8 masked photos (a `bare_fraction` share left bare: the refiner must not move a bare
    face), "landmarks": N×5×2 float32, the clean photo's} and, with `detect`, "detected": N×5×2, the detector's
    landmarks on the masked photo (NaN where it finds none: the validation baseline). Photos whose clean face the
    detector is not sure of (score < 0.95) are skipped: their truth would be a guess."""
    detector = detector or FaceDetector()
    rng = np.random.default_rng([seed, 7])
    out: dict[str, list] = {"images": [], "landmarks": [], "detected": []}
    for i, path in enumerate(tqdm(paths, desc="rendering masked faces", unit="photo")):
        photo = load_image(path)
        for j in range(masks_per_face):
            sample = make_sample(photo, seed=seed + i * masks_per_face + j, size=photo_size, styles=WORLD_STYLES,
                                 hard_negative_probability=0.3, occluder_probability=0.2, high_probability=0.2,
                                 degrade_probability=0.3)
            clean = np.asarray(sample["image"])
            if j == 0:
                faces = detector(clean)
                if not faces or faces[0].score < 0.95:
                    break
            image = clean if rng.random() < bare_fraction else np.asarray(sample["masked"])
            out["images"].append(image)
            out["landmarks"].append(faces[0].landmarks)
            if detect:
                found = detector(image)
                out["detected"].append(found[0].landmarks if found else np.full((5, 2), np.nan, np.float32))
    arrays = {key: np.stack(values) for key, values in out.items() if values}
    arrays["landmarks"] = arrays["landmarks"].astype(np.float32)
    return arrays


def load_align_faces(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays `render_align_faces` wrote to an .npz (`train_aligner.py render`)."""
    with np.load(path) as data:
        missing = {"images", "landmarks"} - set(data.files)
        if missing:
            raise ValueError(f"{path} is not a landmark-refiner faces file (no {', '.join(sorted(missing))})")
        return {key: data[key] for key in data.files}


def tight_window(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The photo cut to a random close-up window around the face (TIGHT_MARGINS) → (the cut, its landmarks)."""
    h, w = image.shape[:2]
    eyes, mouth = landmarks[:2].mean(0), landmarks[3:].mean(0)
    unit = float(np.linalg.norm(mouth - eyes))
    (side_lo, side_hi), (top_lo, top_hi), (low_lo, low_hi) = TIGHT_MARGINS
    x0 = int(max(0, landmarks[:, 0].min() - rng.uniform(side_lo, side_hi) * unit))
    x1 = int(min(w, landmarks[:, 0].max() + rng.uniform(side_lo, side_hi) * unit))
    y0 = int(max(0, eyes[1] - rng.uniform(top_lo, top_hi) * unit))
    y1 = int(min(h, mouth[1] + rng.uniform(low_lo, low_hi) * unit))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return image, landmarks
    return np.ascontiguousarray(image[y0:y1, x0:x1]), landmarks - np.array([x0, y0], np.float32)


def thrown_crop(image: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: int,
                rng: np.random.Generator, tight_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A crop of `image` aligned by its true landmarks onto the refiner's `template`, then thrown off by a random
    similarity about its centre (rotation, scale, shift) and mirrored half the time → (the size×size×3 crop,
    the true landmarks in its pixels). A `tight_share` of the photos are cut to a close-up first (`tight_window`)."""
    if tight_share > 0 and rng.random() < tight_share:
        image, landmarks = tight_window(image, landmarks, rng)
    log_scale, degrees, shift = WIDE_THROW if rng.random() < WIDE_SHARE else USUAL_THROW
    angle = np.radians(rng.normal(0, degrees))
    scale = np.exp(rng.normal(0, log_scale))
    a, b = scale * np.cos(angle), scale * np.sin(angle)
    centre = np.array([size / 2, size / 2])
    throw = np.array([[a, -b, 0.0], [b, a, 0.0], [0, 0, 1]])
    throw[:2, 2] = centre - throw[:2, :2] @ centre + rng.normal(0, shift, 2) * size
    matrix = (throw @ np.vstack([similarity_matrix(landmarks, template), [0, 0, 1]]))[:2]
    crop = warp_face(image, matrix, size).crop
    points = apply_affine(matrix, landmarks)
    if rng.random() < 0.5:
        crop, points = crop[:, ::-1], points[FLIP_ORDER] * [-1, 1] + [size, 0]
    return np.ascontiguousarray(crop), points.astype(np.float32)


def sample_batch(data: dict[str, np.ndarray], indices: np.ndarray, template: np.ndarray, size: int,
                 rng: np.random.Generator, tight_share: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Thrown crops of the faces at `indices` → (N×3×size×size in [-1, 1], true landmarks N×5×2 in crop pixels)."""
    crops, points = zip(*(thrown_crop(data["images"][i], data["landmarks"][i], template, size, rng, tight_share)
                          for i in indices))
    return images_to_tensor(list(crops)), torch.from_numpy(np.stack(points))


def alignment_error(landmarks: np.ndarray, truth: np.ndarray, size: int = 128) -> float:
    """How far the working-size crop aligned by `landmarks` lies from the one aligned by `truth`: the mean distance,
    in crop pixels at `size`, between where a 7×7 grid over the crop lands in the photo under each."""
    grid = np.stack(np.meshgrid(*[np.linspace(size / 8, size * 7 / 8, 7)] * 2), -1).reshape(-1, 2)
    to_crop = [similarity_matrix(points, TEMPLATE_LANDMARKS * size) for points in (landmarks, truth)]
    placed = [apply_affine(invert_affine(matrix), grid) for matrix in to_crop]
    return float(np.linalg.norm(placed[0] - placed[1], axis=1).mean() * crop_scale(to_crop[1]))


def refined_errors(refiner: torch.nn.Module, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Alignment errors (`alignment_error`) of the detector's landmarks and of the refined ones, on the faces the
    detector found ("detected" not NaN)."""
    errors: dict[str, list] = {"detector": [], "refined": []}
    for image, truth, found in zip(data["images"], data["landmarks"], data["detected"]):
        if np.isnan(found).any():
            continue
        errors["detector"].append(alignment_error(found, truth))
        errors["refined"].append(alignment_error(refine_landmarks(image, found, refiner), truth))
    return {key: np.array(values) for key, values in errors.items()}
