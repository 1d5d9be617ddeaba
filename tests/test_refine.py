"""The detail stage: RefineGenerator, its place in the pipeline (faces larger than the crop), saving, and
train/train_refiner.py end to end (render pairs, fit a few steps) on photos made here."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unmask_hf import UnmaskPipeline
from unmask_hf.models import RefineGenerator
from unmask_hf.models.refine_generator import refine_inputs
from unmask_hf.training.refine_data import load_refine_pairs, sample_patches

from .conftest import make_tiny_pipeline
from .test_losses import write_vgg

ROOT = Path(__file__).resolve().parents[1]


def _inputs(n: int = 2, size: int = 32, scale: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    crops = torch.rand(n, 3, size * scale, size * scale, generator=g) * 2 - 1
    generated = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    regions = torch.zeros(n, 1, size, size)
    regions[:, :, size // 2:, size // 4: 3 * size // 4] = 1
    return crops, generated, regions


def _randomize_tail(refiner: RefineGenerator) -> RefineGenerator:
    torch.manual_seed(1)
    torch.nn.init.normal_(refiner.tail.weight, std=0.05)
    return refiner.eval()


def test_refine_inputs_upscale_the_fill_into_the_region_only():
    crops, generated, regions = _inputs()
    coarse, big = refine_inputs(crops, generated, regions)
    assert coarse.shape == crops.shape and big.shape == (2, 1, 64, 64)
    assert torch.equal(big[:, :, 32:, 16:48], torch.ones(2, 1, 32, 32)) and big.sum() == 2 * 32 * 32
    assert torch.equal(coarse[big.expand_as(coarse) == 0], crops[big.expand_as(crops) == 0])
    assert not torch.equal(coarse, crops)


def test_an_untrained_refiner_returns_the_bicubic_fill():
    coarse, region = refine_inputs(*_inputs())
    with torch.no_grad():
        assert torch.allclose(RefineGenerator(channels=8, blocks=1)(coarse, region), coarse, atol=1e-6)


def test_a_refiner_changes_pixels_inside_the_region_only():
    coarse, region = refine_inputs(*_inputs())
    with torch.no_grad():
        out = _randomize_tail(RefineGenerator(channels=8, blocks=1))(coarse, region)
    outside = region.expand_as(out) == 0
    assert torch.equal(out[outside], coarse[outside])
    assert (out - coarse).abs()[~outside].mean() > 1e-3
    assert out.min() >= -1 and out.max() <= 1


def test_a_detail_only_refiner_adds_texture_but_does_not_shift_the_colour():
    coarse, region = refine_inputs(*_inputs())
    coarse = 0.3 * coarse  # no clamping at ±1, which would hide a shift
    plain = _randomize_tail(RefineGenerator(channels=8, blocks=1))
    torch.nn.init.constant_(plain.tail.bias, 0.2)  # a colour cast over the whole region
    detail = RefineGenerator(channels=8, blocks=1, detail_only=True)
    detail.load_state_dict(plain.state_dict())
    inside = region.expand_as(coarse) > 0
    with torch.no_grad():
        shifts = [(model(coarse, region) - coarse)[inside] for model in (plain, detail.eval())]
    assert shifts[0].mean() > 0.15  # the cast
    assert abs(shifts[1].mean()) < 0.02  # gone: only the local variation is left
    assert shifts[1].abs().mean() > 1e-3


def test_pipeline_saves_and_loads_its_refiner_and_drops_a_stale_one(tmp_path):
    pipe = make_tiny_pipeline()
    pipe.refiner = _randomize_tail(RefineGenerator(channels=8, blocks=1))
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "refine" / "model.safetensors").is_file()
    loaded = UnmaskPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.refiner, RefineGenerator) and loaded.refiner.scale == 2
    for a, b in zip(pipe.refiner.state_dict().values(), loaded.refiner.state_dict().values()):
        assert torch.equal(a, b)
    make_tiny_pipeline().save_pretrained(tmp_path)  # no refiner: the folder must not keep the old one
    assert not (tmp_path / "refine").exists() and UnmaskPipeline.from_pretrained(tmp_path).refiner is None


def test_a_large_aligned_face_is_refined_inside_the_drawn_mask_only(astronaut_rgb):
    photo = np.asarray(Image.fromarray(astronaut_rgb).resize((256, 256)))
    mask = np.zeros((256, 256), bool)
    mask[140:200, 80:180] = True
    plain = make_tiny_pipeline()
    refined = make_tiny_pipeline()
    refined.refiner = _randomize_tail(RefineGenerator(channels=8, blocks=1))
    a = np.asarray(plain(photo, aligned=True, mask=mask).image)
    b = np.asarray(refined(photo, aligned=True, mask=mask).image)
    assert np.array_equal(b[~mask], photo[~mask])
    assert np.abs(a.astype(int) - b)[mask].mean() > 0.5  # the refiner's residual reached the paste


def test_only_faces_larger_than_the_crop_get_the_detail_stage(astronaut_rgb, monkeypatch):
    pipe = make_tiny_pipeline()
    pipe.refiner = RefineGenerator(channels=8, blocks=1).eval()
    calls = []
    original = pipe.refine
    monkeypatch.setattr(pipe, "refine", lambda *args: calls.append(args[0].shape) or original(*args))
    mask = np.zeros(astronaut_rgb.shape[:2], bool)
    mask[120:170, 190:260] = True
    result = pipe(astronaut_rgb, mask=mask)  # a face of about 100 px, the tiny pipeline's crop is 64
    assert result.faces and calls == [(128, 128, 3)]
    calls.clear()
    small = np.asarray(Image.fromarray(astronaut_rgb).resize((160, 160)))
    small_mask = np.asarray(Image.fromarray(mask).resize((160, 160)))
    assert pipe(small, mask=small_mask).faces and calls == []  # a 30-px face: pasted shrunk, no refiner


def test_patches_are_windows_of_the_pairs_on_even_corners():
    crops, generated, regions = _inputs(n=3)
    truths = torch.rand_like(crops) * 2 - 1
    to_u8 = lambda t: ((t + 1) * 127.5).round().byte()  # noqa: E731
    pairs = {"crops": to_u8(crops), "truths": to_u8(truths), "generated": to_u8(generated), "regions": regions.byte()}
    coarse, region, truth = sample_patches(pairs, torch.tensor([0, 2]), 16, 2, torch.Generator().manual_seed(0))
    assert coarse.shape == truth.shape == (2, 3, 16, 16) and region.shape == (2, 1, 16, 16)
    assert region.sum() > 0  # windows are centred near the region
    whole = pairs["truths"][[0, 2]].float() / 127.5 - 1
    for n in range(2):  # every window at even corners, and their mirror images
        windows = whole[n].unfold(1, 16, 2).unfold(2, 16, 2).permute(1, 2, 0, 3, 4).reshape(-1, 3, 16, 16)
        assert any(torch.equal(truth[n], w) or torch.equal(truth[n].flip(-1), w) for w in windows)


def test_train_refiner_renders_pairs_and_fits(tmp_path, astronaut_faces):
    tiny = tmp_path / "tiny"
    make_tiny_pipeline().save_pretrained(tiny)
    script = [sys.executable, str(ROOT / "train" / "train_refiner.py")]
    for split in ("train", "validation"):
        subprocess.run(script + ["render", "--faces", str(astronaut_faces), "--split", split, "--model", str(tiny),
                                 "--photo-size", "160", "--masks-per-face", "2", "--out", str(tmp_path / f"{split}.npz")],
                       check=True, capture_output=True, text=True)
    pairs = load_refine_pairs(tmp_path / "train.npz")
    assert pairs["crops"].shape[1:] == (3, 128, 128) and pairs["generated"].shape[1:] == (3, 64, 64)
    assert pairs["regions"].shape[1:] == (1, 64, 64) and len(pairs["crops"]) >= 2
    vgg = write_vgg(tmp_path / "vgg.safetensors", "D", 2)
    run = subprocess.run(script + ["fit", "--pairs", str(tmp_path / "train.npz"), "--val", str(tmp_path / "validation.npz"),
                                   "--init", str(tiny), "--perceptual-weights", vgg, "--output-dir", str(tmp_path / "run"),
                                   "--max-steps", "2", "--val-every", "1", "--batch-size", "2", "--patch", "32",
                                   "--channels", "8", "--blocks", "1", "--adversarial-weight", "0.1"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "critic=" in run.stderr  # the patch discriminator trained alongside
    for name in ("pipeline", "best"):
        loaded = UnmaskPipeline.from_pretrained(tmp_path / "run" / name)
        assert isinstance(loaded.refiner, RefineGenerator)
        assert "bicubic_psnr_bbox" in loaded.info["refine"]["validation"]
    trained = UnmaskPipeline.from_pretrained(tmp_path / "run" / "pipeline").refiner
    assert any(p.abs().sum() > 0 for p in trained.tail.parameters())  # it left the zero start


@pytest.mark.parametrize("missing", ["regions"])
def test_a_file_that_is_not_refiner_pairs_is_refused(tmp_path, missing):
    arrays = {"crops": np.zeros((1, 8, 8, 3), np.uint8), "truths": np.zeros((1, 8, 8, 3), np.uint8),
              "generated": np.zeros((1, 4, 4, 3), np.uint8), "regions": np.zeros((1, 4, 4), np.uint8)}
    del arrays[missing]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="not a refiner pairs file"):
        load_refine_pairs(tmp_path / "bad.npz")
