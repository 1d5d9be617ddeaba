"""Faces in arbitrary photos: MTCNN detection with 5 landmarks, similarity alignment to the training crop, paste-back.

Coordinates are continuous image pixels: pixel (row i, column j) covers [j, j+1) x [i, i+1), so its centre is at
(j + 0.5, i + 0.5). PIL's affine transform uses the same convention, so matrices need no half-pixel fix-ups.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torchvision.ops import nms, roi_align

from .blend import blend_patch
from .io import images_to_tensor

# Five landmarks of the aligned face crop, as fractions of the crop side:
# left eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right).
# The mean FaceDetector landmarks over the first 500 training crops (roughly aligned CelebA faces, 192 px; faces
# found in all 500), so that align_face reproduces the training framing. Measured with:
#   python benchmarks/faces_template.py /work/shared/data/celeba-faces/train --count 500
TEMPLATE_LANDMARKS = np.array(
    [[0.384, 0.435], [0.613, 0.434], [0.496, 0.576], [0.395, 0.674], [0.602, 0.673]], dtype=np.float32
)

# The crop `below_matrix` makes: the face this many times smaller, the row at this fraction of the side fixed. The map
# module was trained with 6 % scale jitter; at 1.3 it still finds a mask, and the crop reaches 27 % of a side lower.
BELOW_ZOOM = 1.3
BELOW_ANCHOR = 0.1
BOTTOM_TOUCH = 0.1  # of the side: a map at least this wide on the crop's bottom row may go on below it

# The mean FaceDetector box (x0, y0, x1, y1) on the same crops, as fractions of the side: a box a user draws around
# a face is mapped onto the crop as a detected box would be. Measured with the same command.
TEMPLATE_BOX = np.array([0.244, 0.167, 0.739, 0.838], dtype=np.float32)

MTCNN_WEIGHTS = Path(__file__).parent / "weights" / "mtcnn" / "mtcnn.safetensors"


class PNet(nn.Module):
    """MTCNN proposal net: fully convolutional, a face probability and box offsets for every 12x12 window (stride 2)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # not-face / face logits
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets, fractions of the window side

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x).softmax(1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """MTCNN refine net: re-scores 24x24 candidate crops and refines their boxes."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        # The weights were ported from TensorFlow, whose flatten order is (width, height, channel).
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense5_1(x).softmax(1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """MTCNN output net: final score, box and 5 landmarks from 48x48 crops."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)  # 5 x then 5 y, fractions of the box

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))  # TensorFlow flatten order, as in RNet
        return self.dense6_1(x).softmax(1)[:, 1], self.dense6_2(x), self.dense6_3(x)


@dataclass
class DetectedFace:
    """One face found in a photo: its box, 5 landmarks (TEMPLATE_LANDMARKS order) and detector confidence."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels (may reach outside the image)
    landmarks: np.ndarray  # (5, 2) float32, image pixels, same order as TEMPLATE_LANDMARKS
    score: float


def confidence(faces: list[DetectedFace]) -> float:
    """How sure a look at a photo is: its best face's score (0 for no face)."""
    return max((f.score for f in faces), default=0.0)


# An unsure face whose side is under this fraction of a sure face's in the same photo is dropped: on the real dev
# photos such faces were mostly goggles, hair, a hand or an earmuff beside the person (7 of 8), not someone further
# back, who is usually found for sure too.
BESIDE_SURE = 0.5


def _side(face: DetectedFace) -> float:
    x0, y0, x1, y1 = face.box
    return float(np.sqrt(max(x1 - x0, 0) * max(y1 - y0, 0)))


def _drop_unsure_beside_sure(faces: list[DetectedFace], sure: float) -> list[DetectedFace]:
    """The faces without those scoring under `sure` that are much smaller than a sure face (BESIDE_SURE)."""
    sure_side = max((_side(f) for f in faces if f.score >= sure), default=0.0)
    return [f for f in faces if f.score >= sure or _side(f) >= BESIDE_SURE * sure_side]


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) / 128.0


def _regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Moves each box edge by its predicted offset (a fraction of the box width/height)."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grows each box to a square around its centre: the nets see square crops."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(1, keepdim=True).values / 2
    return torch.cat([centre - half, centre + half], 1)


def _octaves(image: Image.Image) -> list[torch.Tensor]:
    """The image box-filtered down by 1, 2, 4, ... (exact area averaging, cheap in PIL) as channels_last 1x3xHxW."""
    octaves = [image]
    while min(octaves[-1].size) >= 96:
        octaves.append(octaves[-1].reduce(2))
    return [torch.from_numpy(np.asarray(o, dtype=np.float32)).permute(2, 0, 1)[None] for o in octaves]


def _crops(octaves: list[torch.Tensor], boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Resamples every (square) box to size x size; outside the image reads as black, as in MTCNN.

    Each box is read from the octave where one output cell spans 1-2 pixels, so roi_align's 2x2 samples per cell
    average it without aliasing, at a cost that does not grow with the face size.
    """
    level = torch.log2((boxes[:, 2] - boxes[:, 0]) / (2 * size)).ceil().clamp(0, len(octaves) - 1).long()
    out = torch.empty(len(boxes), 3, size, size)
    for k in level.unique().tolist():
        i = torch.nonzero(level == k).squeeze(1)
        rois = torch.cat([torch.zeros(len(i), 1), boxes[i]], 1)
        out[i] = roi_align(octaves[k], rois, size, spatial_scale=0.5**k, sampling_ratio=2, aligned=True)
    return _normalize(out)


def _nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS with overlap = intersection / smaller area, so a box lying inside a stronger one is dropped."""
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    wh = (torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:]) - torch.maximum(boxes[:, None, :2], boxes[None, :, :2]))
    inter = wh.clamp(min=0).prod(2)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    overlap = inter / torch.minimum(area[:, None], area[None, :]).clamp(min=1e-6)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in range(len(boxes)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= overlap[i] > threshold
    return order[keep]


@dataclass(frozen=True)
class Retry:
    """One more look at a photo where no face was found, or none for sure: padded, rotated, rescaled, mirrored, or
    with other thresholds."""

    pad: float  # added on every side, as a fraction of the longer side: room for faces cut off by the frame
    angle: float = 0.0  # degrees, counter-clockwise: tilted heads
    border: int = cv2.BORDER_REPLICATE  # how the padding is filled (edge pixels, or cv2.BORDER_CONSTANT black)
    scale: float = 1.0  # > 1 enlarges small photos, so faces below min_face_px are found
    thresholds: tuple[float, float, float] | None = None  # None: the detector's own
    mirror: bool = False  # left-right mirrored: MTCNN is not symmetric, so borderline faces may pass mirrored


# Tried in order until a look finds a face it is sure of (FaceDetector.sure); the most confident look wins. Photos
# with a sure face at once pay nothing. On the 400 real photos of ../shared/data/real-masked-dev the plain detector
# found faces in 275; with these retries, in 390 (`python benchmarks/real_photos.py`: tight crops, faces filling the
# frame, tilted heads, small faces). An unsure face found by the plain pass is often a part of a face cut off by the
# frame (an eye, a mask's nose wire): the padded looks find the whole of it.
_LOW = (0.4, 0.5, 0.4)  # the last looks accept less: masks that cover half the face score low
RETRIES = (Retry(0.25), Retry(0.25, border=cv2.BORDER_CONSTANT), Retry(0.5), Retry(0.25, 20), Retry(0.25, -20),
           Retry(0.25, 40), Retry(0.25, -40), Retry(0.25, scale=2.0, thresholds=(0.5, 0.6, 0.4)),
           Retry(0.5, border=cv2.BORDER_CONSTANT, thresholds=_LOW),
           Retry(0.5, border=cv2.BORDER_CONSTANT, thresholds=_LOW, mirror=True),
           Retry(0.25, scale=3.0, thresholds=(0.5, 0.6, 0.4)))
RETRY_SIDE = 1024  # retries look at a copy at most this long: they are for faces that are large in the frame


class FaceDetector:
    """MTCNN face detector (Zhang et al. 2016) with the shipped facenet-pytorch weights; finds masked faces too.

    `min_face` is the smallest face side searched for, as a fraction of the shorter image side (never below
    `min_face_px`): it bounds the image pyramid, which keeps detection fast on large photos.
    `thresholds` are the PNet/RNet/ONet face probabilities to pass; ONet's is 0.5, not MTCNN's 0.7, because masked
    faces score lower (300 CelebA faces with rendered masks: 277 found instead of 266; false detections in 57
    face-free scikit-image photos: 2 instead of 1).
    When nothing is found, or no face scores `sure`, `retries` look again at padded, rotated, enlarged or mirrored
    copies (see RETRIES), and the faces of the most confident look are returned.
    Calling it on an HxWx3 uint8 RGB image returns the faces, largest first.
    """

    def __init__(self, min_face: float = 0.05, min_face_px: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.5), weights: str | Path = MTCNN_WEIGHTS,
                 retries: tuple[Retry, ...] = RETRIES, sure: float = 0.9):
        self.min_face, self.min_face_px, self.thresholds, self.retries = min_face, min_face_px, thresholds, retries
        self.sure = sure
        self.nets = nn.ModuleDict({"pnet": PNet(), "rnet": RNet(), "onet": ONet()})
        self.nets.load_state_dict(load_file(weights))
        # channels_last makes oneDNN's convolutions with few channels several times faster on CPU.
        self.nets.eval().to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> list[DetectedFace]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        faces = self._detect(image, self.thresholds)
        for retry in self.retries:
            if confidence(faces) >= self.sure:
                break
            again = self._retry(image, retry)
            if confidence(again) > confidence(faces):
                faces = again  # the more confident look wins: an unsure face is often a part of a cut-off one
        return _drop_unsure_beside_sure(faces, self.sure)

    def _retry(self, image: np.ndarray, retry: Retry) -> list[DetectedFace]:
        """Detect on a padded / rotated / rescaled / mirrored copy; faces map back to the photo (their centre must
        lie on it)."""
        h, w = image.shape[:2]
        scale = min(retry.scale, RETRY_SIDE / ((1 + 2 * retry.pad) * max(h, w)))
        pad = retry.pad * max(h, w) * scale
        size = (round(w * scale + 2 * pad), round(h * scale + 2 * pad))
        rotate = np.vstack([cv2.getRotationMatrix2D((size[0] / 2, size[1] / 2), retry.angle, 1.0), [0, 0, 1]])
        mirror = np.array([[-1, 0, size[0]], [0, 1, 0], [0, 0, 1]]) if retry.mirror else np.eye(3)
        matrix = mirror @ rotate @ np.array([[scale, 0, pad], [0, scale, pad], [0, 0, 1]])  # photo -> copy
        copy = cv2.warpAffine(image, matrix[:2], size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                              borderMode=retry.border)
        back = invert_affine(matrix[:2])
        faces = []
        for face in self._detect(copy, retry.thresholds or self.thresholds):
            points = apply_affine(back, face.landmarks)
            if retry.mirror:  # the mirrored face's left eye and mouth corner are the photo's right ones
                points = points[[1, 0, 2, 4, 3]]
            x0, y0, x1, y1 = face.box
            corners = apply_affine(back, [[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
            cx, cy = points.mean(0)
            if 0 <= cx < w and 0 <= cy < h:  # not a "face" made of padding
                faces.append(DetectedFace((*corners.min(0).tolist(), *corners.max(0).tolist()),
                                          points.astype(np.float32), face.score))
        return faces

    @torch.inference_mode()
    def _detect(self, image: np.ndarray, thresholds: tuple[float, float, float]) -> list[DetectedFace]:
        """One MTCNN pass over the image."""
        min_face = max(self.min_face_px, self.min_face * min(image.shape[:2]))
        # ONet sees 48x48 crops, so detail finer than a 48-px smallest face is wasted (and big photos are slow):
        # detect on a copy box-filtered by a power of 2, and scale the results back.
        factor = 2 ** max(0, int(np.log2(min_face / 48)))
        octaves = _octaves(Image.fromarray(image).reduce(factor))
        boxes, scores = self._propose(octaves, min_face / factor, thresholds[0])
        if len(boxes):
            boxes, scores = self._refine(octaves, boxes, thresholds[1])
        if not len(boxes):
            return []
        boxes, scores, points = self._output(octaves, boxes, thresholds[2])
        boxes, points = boxes * factor, points * factor
        faces = [DetectedFace(tuple(b.tolist()), p.numpy().astype(np.float32), float(s))
                 for b, p, s in zip(boxes, points, scores)]
        return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))

    def _propose(self, octaves: list[torch.Tensor], min_face: float, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: PNet over an image pyramid whose largest level maps min_face onto PNet's 12 px window."""
        h, w = octaves[0].shape[2:]
        scale = 12 / min_face
        all_boxes, all_scores = [], []
        while min(h, w) * scale >= 12:
            k = min(max(0, int(np.log2(1 / scale))), len(octaves) - 1)
            octave = octaves[k]  # the smallest octave still at least as big as this level
            level = F.interpolate(octave, size=(round(h * scale), round(w * scale)), mode="area")
            sy, sx = level.shape[2] / h, level.shape[3] / w  # actual per-axis scale after rounding
            prob, offsets = self.nets.pnet(_normalize(level))
            _, i, j = torch.nonzero(prob >= threshold, as_tuple=True)
            if len(i):
                # Output cell (i, j) sees the 12x12 level window starting at (2j, 2i).
                x0, y0 = 2 * j / sx, 2 * i / sy
                boxes = torch.stack([x0, y0, x0 + 12 / sx, y0 + 12 / sy], 1)
                boxes = _regress(boxes, offsets[0, :, i, j].T)
                score = prob[0, i, j]
                keep = nms(boxes, score, 0.5)
                all_boxes.append(boxes[keep])
                all_scores.append(score[keep])
            scale *= 0.709  # pyramid step of MTCNN: about 2 levels per octave
        if not all_boxes:
            return torch.zeros(0, 4), torch.zeros(0)
        boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
        keep = nms(boxes, scores, 0.7)
        return _square(boxes[keep]), scores[keep]

    def _refine(self, octaves: list[torch.Tensor], boxes: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: RNet re-scores all candidates in one batch."""
        prob, offsets = self.nets.rnet(_crops(octaves, boxes, 24))
        ok = prob > threshold
        boxes, prob, offsets = boxes[ok], prob[ok], offsets[ok]
        keep = nms(boxes, prob, 0.7)
        return _square(_regress(boxes[keep], offsets[keep])), prob[keep]

    def _output(self, octaves: list[torch.Tensor], boxes: torch.Tensor, threshold: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 3: ONet gives the final score, box and landmarks."""
        prob, offsets, marks = self.nets.onet(_crops(octaves, boxes, 48))
        ok = prob > threshold
        boxes, prob, offsets, marks = boxes[ok], prob[ok], offsets[ok], marks[ok]
        size = boxes[:, 2:] - boxes[:, :2]
        points = boxes[:, None, :2] + torch.stack([marks[:, :5], marks[:, 5:]], 2) * size[:, None]
        boxes = _regress(boxes, offsets)
        keep = _nms_min(boxes, prob, 0.7)
        return boxes[keep], prob[keep], points[keep]


def marked_face(size: tuple[int, int], box: tuple[float, float, float, float] | None = None,
                eyes: tuple[tuple[float, float], tuple[float, float]] | None = None) -> DetectedFace:
    """A face the user marked on a photo of `size` (width, height): a box around it (x0, y0, x1, y1), or the centres of
    its two eyes ((x, y), (x, y)) in image pixels, in any order. Landmarks follow from the template, as if detected.

    Raises ValueError for a mark that is degenerate or off the photo.
    """
    if (box is None) == (eyes is None):
        raise ValueError("Mark the face with either a box (x0, y0, x1, y1) or two eye positions, not both or neither")
    width, height = size
    if box is not None:
        points = _finite_points(box, 2, "face box (x0, y0, x1, y1)")
        (x0, y0), (x1, y1) = points.min(0), points.max(0)
        if x1 - x0 < 8 or y1 - y0 < 8:
            raise ValueError(f"The face box {tuple(box)} is too small: mark the whole face (at least 8x8 pixels)")
        centre = (x0 + x1) / 2, (y0 + y1) / 2
        if not (0 <= centre[0] <= width and 0 <= centre[1] <= height):
            raise ValueError(f"The face box {tuple(box)} lies off the {width}x{height} photo")
        corners = lambda b: np.array([[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]], np.float64)
        matrix = similarity_matrix(corners(TEMPLATE_BOX), corners((x0, y0, x1, y1)))
        mark = (float(x0), float(y0), float(x1), float(y1))
    else:
        points = _finite_points(eyes, 2, "eye positions ((x, y), (x, y))")
        points = points[np.argsort(points[:, 0])]  # left eye = the one further left in the image
        if np.linalg.norm(points[1] - points[0]) < 4:
            raise ValueError(f"The two eye positions {points.tolist()} are too close: click the centre of each eye")
        if not ((points >= 0) & (points <= (width, height))).all():
            raise ValueError(f"An eye position {points.tolist()} lies off the {width}x{height} photo")
        matrix = similarity_matrix(TEMPLATE_LANDMARKS[:2], points)
        mark = None
    landmarks = apply_affine(matrix, TEMPLATE_LANDMARKS).astype(np.float32)
    if mark is None:  # the box a detector would have given these eyes
        b = apply_affine(matrix, TEMPLATE_BOX.reshape(2, 2))
        mark = tuple(float(v) for v in (*b.min(0), *b.max(0)))
    return DetectedFace(mark, landmarks, 1.0)


def _finite_points(values, count: int, what: str) -> np.ndarray:
    try:
        points = np.asarray(values, dtype=np.float64).reshape(count, 2)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Expected the {what} as {2 * count} numbers, got {values!r}") from e
    if not np.isfinite(points).all():
        raise ValueError(f"The {what} must be finite numbers, got {values!r}")
    return points


@dataclass
class AlignedFace:
    """A face warped to the training crop geometry, with the affine matrix that did it."""

    crop: np.ndarray  # size x size x 3 uint8
    matrix: np.ndarray  # 2x3 affine, image pixels -> crop pixels


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) taking src points to dst, as 2x3."""
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    # Unknowns (a, b, tx, ty) of [[a, -b, tx], [b, a, ty]]: each point gives one row for u and one for v.
    A = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)]).astype(np.float64)
    a, b, tx, ty = np.linalg.lstsq(A, np.concatenate([dst[:, 0], dst[:, 1]]).astype(np.float64), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N×2) moved by a 2×3 affine matrix."""
    return np.asarray(points) @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The 2×3 affine matrix that undoes `matrix`."""
    return np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]


def crop_scale(matrix: np.ndarray) -> float:
    """Crop pixels per image pixel."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def _footprint(matrix: np.ndarray, size: int, width: int, height: int, clip: bool = True) -> tuple[int, int, int, int]:
    """Integer box (x0, y0, x1, y1) of the image covered by the size x size crop, clipped to the image unless
    `clip` is False (then it may reach past the image's edges)."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
    p = corners @ invert_affine(matrix).T
    x0, y0 = np.floor(p.min(0)).astype(int) - 1  # 1 px more for the bilinear neighbours at the crop border
    x1, y1 = np.ceil(p.max(0)).astype(int) + 1
    return (max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)) if clip else (x0, y0, x1, y1)


def _warp(image: Image.Image, out_to_in: np.ndarray, size: tuple[int, int]) -> Image.Image:
    return image.transform(size, Image.Transform.AFFINE, tuple(out_to_in.ravel()), resample=Image.Resampling.BILINEAR)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int, mirror: bool = True) -> AlignedFace:
    """Warps the face to a size x size crop, its landmarks onto TEMPLATE_LANDMARKS * size.

    Where the crop reaches past the photo (a tight crop, a face at the edge) the photo goes on mirrored at its
    edge, as in training's alignment jitter: a black border is unlike any crop the models saw, and the map
    module took it for a dark mask. `mirror=False` leaves it black (for a user's mask, which must not grow).
    """
    return warp_face(image, similarity_matrix(landmarks, TEMPLATE_LANDMARKS * size), size, mirror)


def refine_landmarks(image: np.ndarray, landmarks: np.ndarray, refiner: nn.Module,
                     rounds: int | None = None) -> np.ndarray:
    """A face's landmarks (5×2, photo pixels) corrected by a `models.LandmarkRefiner` looking at the face: each
    round (default: the refiner's `rounds`) crops the photo as the refiner expects from the landmarks so far and
    moves them where it finds them."""
    device = next(refiner.parameters()).device
    for _ in range(refiner.rounds if rounds is None else rounds):
        matrix = similarity_matrix(landmarks, refiner.crop_template())
        crop = images_to_tensor([warp_face(image, matrix, refiner.size).crop]).to(device)
        with torch.inference_mode():
            found = refiner(crop).float()[0].cpu().numpy()
        landmarks = apply_affine(invert_affine(matrix), found)
    return landmarks.astype(np.float32)


def below_zoom(size: int) -> np.ndarray:
    """The 3×3 map from a face's aligned S×S crop to its `below_matrix` crop: the face BELOW_ZOOM times smaller,
    the row at BELOW_ANCHOR of the side kept in place, so the crop ends (BELOW_ZOOM - 1)(1 - BELOW_ANCHOR) of a
    side lower."""
    shrink, anchor = 1 / BELOW_ZOOM, np.array([0.5, BELOW_ANCHOR]) * size
    return np.array([[shrink, 0, anchor[0] * (1 - shrink)], [0, shrink, anchor[1] * (1 - shrink)], [0, 0, 1]])


def below_matrix(matrix: np.ndarray, size: int) -> np.ndarray:
    """The photo → crop matrix of a crop that reaches further below the face than `matrix`'s (`below_zoom`). For a
    face mask hanging below the aligned crop's bottom edge."""
    return (below_zoom(size) @ np.vstack([matrix, [0, 0, 1]]))[:2]


def reaches_below(region: np.ndarray, matrix: np.ndarray, width: int, height: int) -> bool:
    """Whether a map (S×S bool) on the crop `matrix` made runs off the crop's bottom edge, over at least BOTTOM_TOUCH
    of the side, where the photo goes on below it: the mask may hang lower than the crop shows."""
    size = len(region)
    columns = np.flatnonzero(region[-1])
    points = apply_affine(invert_affine(matrix), np.stack([columns + 0.5, np.full(len(columns), size + 0.5)], 1))
    inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    return inside.sum() >= BOTTOM_TOUCH * size


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int, mirror: bool = True) -> AlignedFace:
    """`align_face` for a given photo → crop matrix."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = _footprint(matrix, size, w, h)
    if x1 <= x0 or y1 <= y0:
        return AlignedFace(np.zeros((size, size, 3), np.uint8), matrix)
    # Bilinear sampling aliases when shrinking by more than 2x, so box-filter the face region down first;
    # `source` maps pixels of that reduced region back to image pixels.
    factor = max(1, int(1 / crop_scale(matrix)))
    box = (x0, y0, x1, y1)
    if mirror:
        ux0, uy0, ux1, uy1 = _footprint(matrix, size, w, h, clip=False)
        left, top = -(-(x0 - ux0) // factor) * factor, -(-(y0 - uy0) // factor) * factor  # whole boxes: same filter
        pads = ((top, uy1 - y1), (left, ux1 - x1)) + ((0, 0),) * (image.ndim - 2)  # the clipped box lies inside
        if any(p for pair in pads for p in pair):  # pad only the covered part: cheap on a large photo
            image = np.pad(image[y0:y1, x0:x1], pads, mode="reflect" if min(y1 - y0, x1 - x0) > 1 else "edge")
            box, x0, y0 = (0, 0, image.shape[1], image.shape[0]), x0 - left, y0 - top  # the padded corner's pixel
    region = Image.fromarray(image).reduce(factor, box=box)
    source = np.array([[factor, 0, x0], [0, factor, y0], [0, 0, 1]], dtype=np.float64)
    crop_to_region = np.linalg.inv(source) @ np.vstack([invert_affine(matrix), [0, 0, 1]])
    crop = _warp(region, crop_to_region[:2], (size, size))
    return AlignedFace(np.asarray(crop), matrix)


def map_to_photo(crop_map: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """A map on the crop `matrix` made (S×S bool) at the photo's pixels (height×width bool), as `paste_back` places
    it: bilinear, then >= 0.5."""
    size = len(crop_map)
    full = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = _footprint(matrix, size, width, height)
    if x1 > x0 and y1 > y0:
        region_to_crop = matrix @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
        full[y0:y1, x0:x1] = _map_in_footprint(crop_map.astype(np.float32), region_to_crop, (x1 - x0, y1 - y0))
    return full


def _map_in_footprint(crop_map: np.ndarray, region_to_crop: np.ndarray, roi: tuple[int, int]) -> np.ndarray:
    return np.asarray(_warp(Image.fromarray(crop_map), region_to_crop, roi)) >= 0.5


def paste_back(image: np.ndarray, crop_output: np.ndarray, crop_mask: np.ndarray, matrix: np.ndarray,
               within: np.ndarray | None = None, detail_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Warps an edited crop and its mask back into the photo and blends them in; returns (new image, uint8 0/255 mask).

    The region is the warped crop mask >= 0.5, blended in by `blend.blend_patch` (grain matched to the visible
    skin): feathered inward from its edge, or, with `within` (an H×W bool, the user's mask), limited to it and
    replaced up to its edge, colour-matched there. Every pixel outside the region is unchanged. detail_scale: crop
    pixels per pixel the model generated (a refined crop is larger than the fill it sharpens); grain goes where
    the photo has more pixels than the model generated.
    """
    h, w = image.shape[:2]
    size = crop_output.shape[0]
    mask = np.asarray(crop_mask, dtype=np.float32).reshape(size, size)
    if np.asarray(crop_mask).dtype == np.uint8:
        mask = mask / 255.0
    full_mask = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = _footprint(matrix, size, w, h)
    if x1 <= x0 or y1 <= y0:
        return image.copy(), full_mask
    # Work only on the photo region the crop covers: region pixel q is image pixel q + (x0, y0).
    region_to_crop = matrix @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    roi = (x1 - x0, y1 - y0)
    # A face smaller than the crop: box-filter the output down first (bilinear alone aliases beyond 2x), so it
    # is pasted at the face's own size without jaggies.
    factor = max(1, int(crop_scale(matrix)))
    region_to_reduced = np.diag([1 / factor, 1 / factor, 1]) @ np.vstack([region_to_crop, [0, 0, 1]])
    edited = np.asarray(_warp(Image.fromarray(crop_output).reduce(factor), region_to_reduced[:2], roi))
    inside = _map_in_footprint(mask, region_to_crop, roi)
    if within is not None:
        inside &= within[y0:y1, x0:x1]
    out = image.copy()
    out[y0:y1, x0:x1] = blend_patch(out[y0:y1, x0:x1], edited, inside, size / crop_scale(matrix),
                                    detail_scale / crop_scale(matrix), within is not None)
    full_mask[y0:y1, x0:x1] = inside * 255
    return out, full_mask
