"""MobileFaceNet and its input warp, with random weights written to a temp file (never ../shared)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from skimage.data import astronaut

from unmask_hf.faces import TEMPLATE_LANDMARKS, similarity_matrix
from unmask_hf.models.mobilefacenet import (ARCFACE_LANDMARKS, ARCFACE_SIZE, FaceEmbedder, MobileFaceNet,
                                            crop_to_arcface_theta, load_face_embedder)


def write_mobilefacenet(path) -> str:
    """Random MobileFaceNet weights with the published file's keys (batch-norm statistics included)."""
    torch.manual_seed(0)
    network = MobileFaceNet()
    # Batch-norm statistics of one noise batch: with the initial ones (0, 1) a random network maps every image
    # to about the same embedding; these also make strict loading of every buffer matter.
    for m in network.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    with torch.no_grad():
        network.train()(torch.randn(16, 3, 112, 112))
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    return write_mobilefacenet(tmp_path_factory.mktemp("mfn") / "mobilefacenet.safetensors")


def test_layout_of_the_published_weights():
    state = MobileFaceNet().state_dict()
    assert len(state) == 307  # as in ../shared/README.md, batch-norm buffers included
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) < 1.1e6
    assert state["features.14.conv.2.weight"].shape == (128, 256, 1, 1)
    assert state["gdconv.depthwise.weight"].shape == (512, 1, 7, 7)
    assert MobileFaceNet()(torch.zeros(2, 3, 112, 112)).shape == (2, 128)


def test_loads_strictly_and_embeds_unit_vectors(weights, tmp_path):
    embedder = load_face_embedder(weights)
    for key, value in load_file(weights).items():
        assert torch.equal(embedder.network.state_dict()[key], value), key
    big = torch.from_numpy(astronaut()[:256, 128:384].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    crops = torch.cat([F.interpolate(big, size=128, mode="area"), torch.rand(2, 3, 128, 128) * 2 - 1])
    e = embedder(crops)
    assert e.shape == (3, 128) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    # Any crop size: the face at 256 px is closer to itself at 128 px than noise is (random weights: not by much).
    assert (embedder(big) * e[:1]).sum() > (e[:1] * e[1:]).sum(1).max()
    embedder.train()
    assert not embedder.training and not any(p.requires_grad for p in embedder.parameters())
    state = load_file(weights)
    del state["bn.running_var"]
    save_file(state, str(tmp_path / "missing.safetensors"))
    with pytest.raises(RuntimeError, match="(?s)missing.safetensors.*bn.running_var"):
        load_face_embedder(tmp_path / "missing.safetensors")
    with pytest.raises(RuntimeError, match="not found.*--identity-weights"):
        load_face_embedder(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("size", [64, 128, 256])
def test_warp_puts_our_template_on_arcface(size):
    """A dot on each of our template's landmarks lands where the similarity fit puts it, within 3 px of
    the ArcFace template's landmark (the two templates are not exactly similar)."""
    crop = torch.zeros(1, 5, size, size)
    for k, (x, y) in enumerate(TEMPLATE_LANDMARKS * size):
        yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
        crop[0, k] = torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (size / 64) ** 2))
    grid = F.affine_grid(crop_to_arcface_theta(size)[None], [1, 5, ARCFACE_SIZE, ARCFACE_SIZE], align_corners=False)
    warped = F.grid_sample(crop, grid, align_corners=False)[0]
    centres = (torch.arange(ARCFACE_SIZE) + 0.5).double()
    fit = similarity_matrix(TEMPLATE_LANDMARKS * size, ARCFACE_LANDMARKS)
    for k, target in enumerate(ARCFACE_LANDMARKS):
        w = warped[k].double() / warped[k].sum()
        found = np.array([float((w.sum(0) * centres).sum()), float((w.sum(1) * centres).sum())])
        assert np.abs(found - fit @ [*TEMPLATE_LANDMARKS[k] * size, 1]).max() < 0.25
        assert np.abs(found - target).max() < 3.5  # MTCNN puts the nose tip 3 px lower


def test_gradients_reach_the_crop(weights):
    embedder = load_face_embedder(weights)
    crops = (torch.rand(2, 3, 128, 128) * 2 - 1).requires_grad_()
    (embedder(crops)[0] * embedder(crops)[1]).sum().backward()
    assert torch.isfinite(crops.grad).all()
    # The ArcFace crop is the face's centre: the nose and mouth get gradient, the crop's top corners none.
    assert crops.grad[..., 60:100, 40:90].abs().sum() > 0 and crops.grad[..., :8, :8].abs().sum() == 0
