"""The landmark refiner: LandmarkRefiner, faces.refine_landmarks, its place in the pipeline, saving, the thrown
training crops, and train/train_aligner.py end to end (render, fit a few steps) on photos made here."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from unmask_hf import UnmaskPipeline
from unmask_hf.faces import TEMPLATE_LANDMARKS, FaceDetector, refine_landmarks, similarity_matrix
from unmask_hf.models import LandmarkRefiner
from unmask_hf.training.align_data import (FLIP_ORDER, TIGHT_MARGINS, alignment_error, load_align_faces, thrown_crop,
                                           tight_window)

from .conftest import make_tiny_pipeline

ROOT = Path(__file__).resolve().parents[1]
LANDMARKS = np.array([[210, 230], [290, 228], [252, 280], [220, 320], [285, 318]], np.float32)


def _shifted(refiner: LandmarkRefiner, dx: float, dy: float) -> LandmarkRefiner:
    """A refiner that always finds the landmarks (dx, dy) crop pixels from where the crop's template puts them."""
    with torch.no_grad():
        refiner.head[-1].bias.copy_(torch.tensor([dx, dy] * 5) / (refiner.size / 4))
    return refiner.eval()


def test_an_untrained_refiner_keeps_the_alignment():
    image = np.random.default_rng(0).integers(0, 256, (400, 500, 3), dtype=np.uint8)
    refined = refine_landmarks(image, LANDMARKS, LandmarkRefiner(size=32, width=8).eval())
    # It finds the template's landmarks, which the alignment of the rough ones puts there: the same alignment.
    np.testing.assert_allclose(similarity_matrix(refined, TEMPLATE_LANDMARKS * 128),
                               similarity_matrix(LANDMARKS, TEMPLATE_LANDMARKS * 128), atol=1e-4)


def test_refined_landmarks_move_by_what_the_refiner_finds_in_photo_pixels():
    image = np.zeros((400, 500, 3), np.uint8)
    refiner = _shifted(LandmarkRefiner(size=32, context=1.0, width=8), 2.0, 0.0)
    refined = refine_landmarks(image, LANDMARKS, refiner, rounds=1)
    # The crop is the aligned crop's field at 32 px: one crop pixel is (eye distance / (0.229 × 32)) photo pixels.
    photo_per_crop = np.linalg.norm(LANDMARKS[1] - LANDMARKS[0]) / ((TEMPLATE_LANDMARKS[1, 0] - TEMPLATE_LANDMARKS[0, 0]) * 32)
    crop_to_photo = np.linalg.inv(np.vstack([similarity_matrix(LANDMARKS, refiner.crop_template()), [0, 0, 1]]))
    moves = refined - (refiner.crop_template() @ crop_to_photo[:2, :2].T + crop_to_photo[:2, 2])
    assert np.allclose(moves, moves.mean(0), atol=0.05)  # one shift for all five points
    assert np.linalg.norm(moves.mean(0)) == pytest.approx(2 * photo_per_crop, rel=0.05)
    assert moves.mean(0)[0] > 0  # the face is barely tilted: crop x is photo x
    # each round moves them again by what the refiner finds: a second round, 2 crop pixels more
    refiner.rounds = 2
    twice = refine_landmarks(image, LANDMARKS, refiner)
    assert np.linalg.norm((twice - refined).mean(0)) == pytest.approx(2 * photo_per_crop, rel=0.1)


def test_the_pipeline_aligns_detected_faces_by_refined_landmarks_but_keeps_marked_ones(astronaut_rgb, monkeypatch):
    face = FaceDetector()(astronaut_rgb)[0]
    pipe = make_tiny_pipeline()
    pipe.landmark_refiner = _shifted(LandmarkRefiner(size=32, width=8), 3.0, 0.0)
    detected = pipe(astronaut_rgb).faces[0].landmarks
    assert np.linalg.norm(detected - face.landmarks, axis=1).min() > 3  # moved
    np.testing.assert_allclose(detected, refine_landmarks(astronaut_rgb, face.landmarks, pipe.landmark_refiner), atol=1e-4)
    eyes = (tuple(face.landmarks[0]), tuple(face.landmarks[1]))
    marked = pipe(astronaut_rgb, eyes=eyes).faces[0].landmarks
    np.testing.assert_allclose(marked[:2], face.landmarks[:2], atol=1e-3)  # the user's clicks stay where they are


def test_pipeline_saves_and_loads_its_landmark_refiner_and_drops_a_stale_one(tmp_path):
    pipe = make_tiny_pipeline()
    pipe.landmark_refiner = _shifted(LandmarkRefiner(size=32, context=1.2, width=8, rounds=2), 1.0, -1.0)
    pipe.save_pretrained(tmp_path)
    loaded = UnmaskPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.landmark_refiner, LandmarkRefiner)
    assert loaded.landmark_refiner.context == 1.2 and loaded.landmark_refiner.rounds == 2
    for a, b in zip(pipe.landmark_refiner.state_dict().values(), loaded.landmark_refiner.state_dict().values()):
        assert torch.equal(a, b)
    make_tiny_pipeline().save_pretrained(tmp_path)
    assert not (tmp_path / "align").exists() and UnmaskPipeline.from_pretrained(tmp_path).landmark_refiner is None


def test_thrown_crops_carry_their_landmarks_along():
    image = Image.new("RGB", (400, 500), (40, 40, 40))
    draw = ImageDraw.Draw(image)
    colours = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)])
    for (x, y), colour in zip(LANDMARKS, colours):
        draw.ellipse((x - 14, y - 14, x + 14, y + 14), fill=tuple(int(c) for c in colour))
    refiner = LandmarkRefiner(size=64, width=8)
    rng = np.random.default_rng(0)
    mirrored = 0
    for _ in range(20):
        crop, points = thrown_crop(np.asarray(image), LANDMARKS, refiner.crop_template(), 64, rng)
        seen = []  # (landmark number, the dot colour found at its point) for the points inside the crop
        for i, (x, y) in enumerate(np.round(points).astype(int)):
            if 0 <= x < 64 and 0 <= y < 64:
                seen.append((i, int(np.argmin(np.abs(colours - crop[y, x].astype(int)).sum(1)))))
        assert len(seen) >= 3
        as_is, flipped = all(i == c for i, c in seen), all(FLIP_ORDER[i] == c for i, c in seen)
        assert as_is or flipped  # each point sits on its own dot, renumbered when the crop is mirrored
        mirrored += flipped and not as_is
    assert 0 < mirrored < 20  # about half the crops are mirrored


def test_a_tight_window_cuts_close_around_the_face_and_moves_its_landmarks_with_it():
    image = np.random.default_rng(1).integers(0, 256, (500, 500, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    unit = np.linalg.norm(LANDMARKS[3:].mean(0) - LANDMARKS[:2].mean(0))
    for _ in range(10):
        cut, points = tight_window(image, LANDMARKS, rng)
        x0, y0 = (LANDMARKS - points)[0].astype(int)
        assert np.array_equal(cut, image[y0:y0 + cut.shape[0], x0:x0 + cut.shape[1]])  # a window of the photo
        assert points[:, 0].min() <= TIGHT_MARGINS[0][1] * unit + 1  # left margin within its range
        assert points[:2, 1].mean() <= TIGHT_MARGINS[1][1] * unit + 1  # little above the eyes
        assert cut.shape[0] - points[3:, 1].mean() <= TIGHT_MARGINS[2][1] * unit + 1  # little below the mouth
        assert cut.shape[0] < 300 and cut.shape[1] < 300


def test_alignment_error_is_zero_for_the_same_landmarks_and_grows_with_a_shift():
    assert alignment_error(LANDMARKS, LANDMARKS) == pytest.approx(0, abs=1e-6)
    crop_per_photo = np.sqrt(np.linalg.det(similarity_matrix(LANDMARKS, TEMPLATE_LANDMARKS * 128)[:, :2]))
    assert alignment_error(LANDMARKS + [5, 0], LANDMARKS) == pytest.approx(5 * crop_per_photo, rel=0.02)


def test_train_aligner_renders_faces_and_fits(tmp_path, astronaut_faces):
    tiny = tmp_path / "tiny"
    make_tiny_pipeline().save_pretrained(tiny)
    script = [sys.executable, str(ROOT / "train" / "train_aligner.py")]
    for split, extra in (("train", []), ("validation", ["--detect"])):
        subprocess.run(script + ["render", "--faces", str(astronaut_faces), "--split", split, "--photo-size", "160",
                                 "--masks-per-face", "2", "--out", str(tmp_path / f"{split}.npz")] + extra,
                       check=True, capture_output=True, text=True)
    train, val = load_align_faces(tmp_path / "train.npz"), load_align_faces(tmp_path / "validation.npz")
    assert train["images"].shape[1:] == (160, 160, 3) and train["landmarks"].shape[1:] == (5, 2)
    assert "detected" in val and "detected" not in train
    run = subprocess.run(script + ["fit", "--faces", str(tmp_path / "train.npz"), "--val", str(tmp_path / "validation.npz"),
                                   "--init", str(tiny), "--output-dir", str(tmp_path / "run"), "--max-steps", "2",
                                   "--val-every", "1", "--batch-size", "4", "--size", "32", "--width", "8"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    for name in ("pipeline", "best"):
        loaded = UnmaskPipeline.from_pretrained(tmp_path / "run" / name)
        assert isinstance(loaded.landmark_refiner, LandmarkRefiner) and loaded.landmark_refiner.size == 32
        assert "refined_mean" in loaded.info["align"]["validation"]
    trained = UnmaskPipeline.from_pretrained(tmp_path / "run" / "pipeline").landmark_refiner
    assert trained.head[-1].weight.abs().sum() > 0  # it left the zero start
    bench = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "alignment.py"), "--faces", str(astronaut_faces),
                            "--count", "4", "--size", "160", "--seed", "0", "--model", str(tmp_path / "run" / "pipeline")],
                           capture_output=True, text=True)
    assert bench.returncode == 0, bench.stderr[-2000:]
    assert "| as rendered | detector | 1 |" in bench.stdout and "| as rendered | refined | 1 |" in bench.stdout


def test_a_file_that_is_not_landmark_refiner_faces_is_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="not a landmark-refiner faces file"):
        load_align_faces(tmp_path / "bad.npz")
