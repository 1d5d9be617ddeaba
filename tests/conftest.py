"""Shared fixtures: small images made here (never ../shared), and a tiny pipeline that is fast on CPU."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut

from unmask_hf import UnmaskPipeline
from unmask_hf.models import EditGenerator, MapGenerator

from .hub_server import hub, olah_server  # noqa: F401  (fixtures: a local Hub over HTTP)

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    """scikit-image's public-domain astronaut photo, 512×512 RGB uint8."""
    return astronaut()


def make_tiny_pipeline(image_size: int = 64, seed: int = 0) -> UnmaskPipeline:
    torch.manual_seed(seed)
    small = dict(base_channels=8, max_channels=16, depth=4, image_size=image_size)
    return UnmaskPipeline(MapGenerator(**small), EditGenerator(**small), device="cpu", info={"status": "untrained"})


@pytest.fixture
def tiny_pipeline() -> UnmaskPipeline:
    return make_tiny_pipeline()


@pytest.fixture
def astronaut_faces(tmp_path, astronaut_rgb) -> Path:
    """A folder of four 160 px photos of one face, cropped differently (no identities CSV: four people), for the
    train/ scripts that render from a folder of faces."""
    faces = tmp_path / "faces"
    faces.mkdir()
    for i, shift in enumerate((0, 16, 32, 48)):
        Image.fromarray(astronaut_rgb[shift:shift + 320, 100 - shift // 2:420 - shift // 2]).resize((160, 160)).save(
            faces / f"photo{i}.png")
    return faces
