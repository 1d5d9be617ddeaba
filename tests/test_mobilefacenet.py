"""MobileFaceNet: its input warp, the identity embedder and the map module's face features, with random weights
written to a temp file (never ../shared)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from skimage.data import astronaut

from unmask_hf.faces import TEMPLATE_LANDMARKS, similarity_matrix
from unmask_hf.models import MapGenerator, with_face_features
from unmask_hf.models.mobilefacenet import (ARCFACE_LANDMARKS, ARCFACE_SIZE, MobileFaceNet,
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


def test_map_module_with_face_features_starts_as_the_map_alone(weights, tmp_path):
    """with_face_features adds the pretrained trunk to a trained map module without changing its maps; training
    moves only the projections (the trunk stays frozen, batch-norm statistics included); save/load keeps it all."""
    torch.manual_seed(0)
    plain = MapGenerator(base_channels=4, max_channels=16, depth=5, image_size=64).eval()
    extended = with_face_features(plain, weights).eval()
    for key, value in load_file(weights).items():
        if key in extended.face_trunk.state_dict():
            assert torch.equal(extended.face_trunk.state_dict()[key], value), key
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(extended(x), plain(x))
        assert [t.shape[-1] for t in extended.face_trunk(x[:, :, ::2, ::2])] == [8, 4, 2]  # levels 3, 4, 5 of 64
    trunk_before = {k: v.clone() for k, v in extended.face_trunk.state_dict().items()}
    extended.train()
    assert not extended.face_trunk.training and extended.unet.training
    optimiser = torch.optim.Adam([p for p in extended.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        optimiser.zero_grad()
        extended(x, logits=True).mean().backward()
        optimiser.step()
    assert all(torch.equal(v, extended.face_trunk.state_dict()[k]) for k, v in trunk_before.items())
    assert all(conv.weight.abs().sum() > 0 for conv in extended.face_projections)
    extended.eval()
    extended.save_pretrained(tmp_path / "map")
    loaded = MapGenerator.from_pretrained(tmp_path / "map").eval()
    with torch.no_grad():
        assert loaded.face_trunk is not None and torch.allclose(loaded(x), extended(x), atol=1e-6)
        assert not torch.allclose(extended(x), plain(x), atol=1e-4)


def test_face_features_errors(weights, tmp_path):
    with pytest.raises(ValueError, match="face_features needs depth >= 5"):
        MapGenerator(base_channels=4, max_channels=8, depth=3, image_size=32, face_features=True)
    with pytest.raises(ValueError, match="no face features"):
        MapGenerator(base_channels=4, max_channels=8, depth=3, image_size=32).load_face_trunk(weights)
    with pytest.raises(RuntimeError, match="not found.*--identity-weights"):
        MapGenerator(base_channels=4, max_channels=8, depth=5, image_size=64, face_features=True).load_face_trunk(
            tmp_path / "nope.safetensors")
