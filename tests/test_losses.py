import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from skimage import data
from skimage.metrics import structural_similarity
from torchvision.models.vgg import cfgs, make_layers

from unmask_hf import losses
from unmask_hf.losses import (
    CAFFE_NORM,
    EditLossWeights,
    IdentityLoss,
    PerceptualLoss,
    discriminator_loss,
    edit_generator_loss,
    generator_adversarial_loss,
    load_perceptual_network,
    map_loss,
    ssim,
)
from unmask_hf.models.mobilefacenet import load_face_embedder

from .test_mobilefacenet import write_mobilefacenet


def write_vgg(path, cfg: str, last_conv: int) -> str:
    """A safetensors file of random VGG weights (fp16, like the shared file) through features[last_conv]."""
    torch.manual_seed(0)
    features = make_layers(cfgs[cfg])[: last_conv + 1]
    save_file({k: v.half().contiguous() for k, v in features.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def vgg16_path(tmp_path_factory):
    return write_vgg(tmp_path_factory.mktemp("vgg") / "vgg16.safetensors", "D", 21)  # through conv4_3


def astronaut_pair():
    a = data.astronaut()[::2, ::2]  # 256 px keeps the test fast
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    return a, noisy


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_ssim_identical_is_one():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2))


def test_ssim_matches_skimage():
    a, b = astronaut_pair()
    ref = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    ours = ssim(to_tensor(a), to_tensor(b)).item()  # [-1, 1] tensors, shifted internally
    assert abs(ours - ref) < 1e-4
    as_uint8_range = ssim(to_tensor(a) * 127.5 + 127.5, to_tensor(b) * 127.5 + 127.5, value_range=(0, 255)).item()
    assert abs(as_uint8_range - ours) < 1e-5


def test_ssim_differentiable_small_images_and_autocast():
    x = (torch.rand(2, 3, 8, 8) * 2 - 1).requires_grad_()
    y = torch.rand(2, 3, 8, 8) * 2 - 1
    (1 - ssim(x, y).mean()).backward()  # 8 px < window: the window shrinks to 7
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = ssim(x, y)
    assert s.dtype == torch.float32


def test_perceptual_network_from_safetensors(vgg16_path):
    net = load_perceptual_network(vgg16_path)
    assert net.arch == "vgg16" and net.layer_ids == (3, 8, 15, 22)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training  # stays frozen inside a parent put in train mode
    assert next(net.parameters()).dtype == torch.float32
    feats = net(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512]
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]


def test_perceptual_network_caffe_input_convention(vgg16_path):
    net = load_perceptual_network(vgg16_path)
    seen = []
    net.features[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    mean = torch.tensor(CAFFE_NORM["mean"]).view(1, 3, 1, 1)
    net(mean.expand(1, 3, 8, 8) / 127.5 - 1)  # the mean pixel in [-1, 1] ...
    net(torch.ones(1, 3, 8, 8))  # ... and white
    assert seen[0].abs().max() < 1e-4  # ... becomes 0
    assert torch.allclose(seen[1], (255 - mean).expand(1, 3, 8, 8))


@pytest.mark.parametrize("cfg,last_conv,arch,layer_ids", [
    ("E", 16, "vgg19", (3, 8, 17)),  # VGG-19 through conv3_4
    ("D", 7, "vgg16", (3, 8)),  # through conv2_2 (VGG-16 and -19 agree up to here)
])
def test_perceptual_network_infers_arch_and_depth(tmp_path, cfg, last_conv, arch, layer_ids):
    net = load_perceptual_network(write_vgg(tmp_path / "w.safetensors", cfg, last_conv))
    assert (net.arch, net.layer_ids) == (arch, layer_ids)
    assert len(net(torch.zeros(1, 3, 16, 16))) == len(layer_ids)


def test_perceptual_network_errors(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError, match="--perceptual-weights"):
        load_perceptual_network(str(tmp_path / "missing.safetensors"))
    save_file({"0.weight": torch.zeros(64, 3, 3, 3), "3.weight": torch.zeros(64, 64, 3, 3)}, str(tmp_path / "bad.st"))
    with pytest.raises(RuntimeError, match="neither VGG-16 nor VGG-19"):
        load_perceptual_network(str(tmp_path / "bad.st"))

    def offline(*args, **kwargs):
        raise OSError("no internet")

    monkeypatch.setattr("torchvision.models.vgg19", offline)
    with pytest.raises(RuntimeError, match="--perceptual-weights PATH"):
        load_perceptual_network()


def test_perceptual_loss(vgg16_path):
    loss = PerceptualLoss(load_perceptual_network(vgg16_path))
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    assert [v.item() for v in loss(y, y)] == [0, 0]
    for term in range(2):  # content, style
        x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
        target = y.clone().requires_grad_()
        value = loss(x, target)[term]
        value.backward()
        assert value.item() > 0 and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        assert target.grad is None  # the target's features are constants


def test_style_loss_ignores_where_texture_sits(vgg16_path):
    """Gram matrices average over positions: the same texture shifted by a few pixels is near the original in
    style and far in content, relative to how far a smooth copy of it is on each."""
    loss = PerceptualLoss(load_perceptual_network(vgg16_path))
    texture = torch.rand(1, 3, 72, 72, generator=torch.Generator().manual_seed(0)) * 2 - 1
    target, shifted = texture[..., :64, :64], texture[..., 5:69, 5:69]
    smooth = F.avg_pool2d(target, 5, stride=1, padding=2, count_include_pad=False)
    (content_shifted, style_shifted), (content_smooth, style_smooth) = loss(shifted, target), loss(smooth, target)
    assert style_shifted / style_smooth < 0.5 * content_shifted / content_smooth


def test_adversarial_losses():
    assert discriminator_loss(torch.full((2, 1, 4, 4), 2.0), torch.full((2, 1, 4, 4), -2.0)).item() == 0
    assert discriminator_loss(torch.zeros(3), torch.zeros(3)).item() == 2
    fake = torch.full((2, 1), 3.0, requires_grad=True)
    g = generator_adversarial_loss(fake)
    g.backward()
    assert g.item() == -3 and torch.all(fake.grad < 0)


def test_map_loss():
    target = (torch.rand(2, 1, 16, 16) > 0.5).float()
    perfect = map_loss((target * 2 - 1) * 30, target)
    assert perfect.item() < 1e-3
    h = torch.randn(2, 1, 16, 16, requires_grad=True)
    loss = map_loss(2 * h, target)  # the MapGenerator's tanh(h): sigmoid(2h) = (tanh(h) + 1) / 2
    loss.backward()
    assert loss.item() > perfect.item() and torch.isfinite(h.grad).all()
    empty = torch.zeros(1, 1, 8, 8)
    assert map_loss(torch.full_like(empty, -30.0), empty).item() < 1e-3  # no mask, none predicted


def test_map_loss_mask_weight():
    """mask_weight > 1 makes a missed mask pixel cost more than a spilled one, and leaves a perfect map at 0."""
    target = torch.zeros(1, 1, 8, 8)
    target[..., 4:, :] = 1
    missed = torch.full_like(target, -2.0)  # nothing found: every mask pixel missed
    spilled = torch.full_like(target, 2.0)  # everything found: every other pixel spilled
    assert map_loss(missed, target, dice_weight=0).item() == pytest.approx(map_loss(spilled, target, dice_weight=0).item())
    weighted = dict(dice_weight=0, mask_weight=3.0)
    assert map_loss(missed, target, **weighted).item() > 2 * map_loss(spilled, target, **weighted).item()
    assert map_loss((target * 2 - 1) * 30, target, mask_weight=3.0).item() < 1e-3


def test_edit_generator_loss(vgg16_path):
    perceptual = PerceptualLoss(load_perceptual_network(vgg16_path))
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 16:28, 8:24] = 1
    generated = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
    output = target * (1 - mask) + generated * mask  # the composite
    whole, region = torch.randn(2, 1, 4, 4, requires_grad=True), torch.randn(2, 1, requires_grad=True)
    w = EditLossWeights(rc=2.0, whole=0.1, mask=0.2)
    total, terms = edit_generator_loss(output, target, mask, whole, region, perceptual, w)
    assert set(terms) == {"l1", "ssim", "perceptual", "style", "rc", "adv_whole", "adv_mask", "total"}
    assert all(torch.isfinite(v) and not v.requires_grad for v in terms.values())
    expected_l1 = ((generated - target).abs() * mask).sum() / (mask.sum() * 3)
    assert torch.allclose(terms["l1"], expected_l1)
    rc = terms["l1"] + terms["ssim"] + terms["perceptual"]
    assert torch.allclose(terms["rc"], rc)
    assert torch.allclose(total, 2.0 * rc + 0.1 * terms["adv_whole"] + 0.2 * terms["adv_mask"])
    total.backward()
    assert torch.isfinite(generated.grad).all() and generated.grad[mask.expand_as(generated) > 0].abs().sum() > 0
    assert whole.grad is not None and region.grad is not None
    warmup_total, warmup_terms = edit_generator_loss(output.detach(), target, mask, None, None, perceptual, w)
    assert set(warmup_terms) == {"l1", "ssim", "perceptual", "style", "rc", "total"}
    assert torch.allclose(warmup_total, 2.0 * rc)
    styled_total, styled = edit_generator_loss(output.detach(), target, mask, None, None, perceptual,
                                               EditLossWeights(style=3.0))
    assert styled["style"] > 0 and torch.allclose(styled["rc"], styled["l1"] + styled["ssim"] + styled["perceptual"]
                                                  + 3.0 * styled["style"])
    assert torch.allclose(styled_total, styled["rc"])


def test_edit_loss_without_perceptual_network():
    target, output = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.ones(2, 1, 32, 32)
    total, terms = edit_generator_loss(output, target, mask, None, None, None, EditLossWeights(perceptual=0.0))
    assert set(terms) == {"l1", "ssim", "rc", "total"}  # the VGG pass is skipped, not computed at weight 0
    assert torch.allclose(total, terms["l1"] + terms["ssim"])
    with pytest.raises(ValueError, match="perceptual-weights"):
        edit_generator_loss(output, target, mask, None, None, None)  # default weight 1 needs the network
    with pytest.raises(ValueError, match="perceptual-weights"):
        edit_generator_loss(output, target, mask, None, None, None, EditLossWeights(perceptual=0.0, style=1.0))


def test_edit_loss_outside_term_holds_the_raw_output_to_the_photo_outside_the_region():
    target = torch.zeros(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1
    generated = target + 0.5 * (1 - mask) + 0.25 * mask  # raw output: 0.5 off outside the region, 0.25 inside
    output = target + 0.25 * mask  # the composite never shows the outside error
    weights = EditLossWeights(perceptual=0.0, outside=2.0)
    total, terms = edit_generator_loss(output, target, mask, None, None, None, weights, generated=generated)
    assert torch.isclose(terms["outside"], torch.tensor(0.5))
    assert torch.allclose(total, terms["rc"] + 2.0 * terms["outside"])
    plain_total, plain = edit_generator_loss(output, target, mask, None, None, None, EditLossWeights(perceptual=0.0))
    assert "outside" not in plain and torch.allclose(plain_total, plain["rc"])  # off by default
    with pytest.raises(ValueError, match="generated"):
        edit_generator_loss(output, target, mask, None, None, None, weights)


def test_edit_loss_l1_ignores_pixels_outside_mask():
    target = torch.zeros(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :2, :2] = 1
    output = target + 0.5 * (1 - mask)  # wrong only outside the mask
    assert losses.masked_l1(output, target, mask).item() == 0
    assert losses.masked_l1(target + 0.5, target, mask).item() == pytest.approx(0.5)
    assert losses.masked_l1(output, target, torch.zeros_like(mask)).item() == 0  # empty mask: no division by 0


def test_identity_loss(tmp_path):
    identity = IdentityLoss(load_face_embedder(write_mobilefacenet(tmp_path / "mfn.safetensors")))
    target = to_tensor(data.astronaut()[:256:2, 128:384:2])
    other = to_tensor(data.coffee()[:128, 200:328])
    assert identity(target, target).item() == pytest.approx(0.0, abs=1e-5)
    assert 0 < identity(other, target).item() <= 2
    output = other.clone().requires_grad_()
    target = target.requires_grad_()
    identity(output, target).backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0
    assert target.grad is None  # the truth is only a reference


def test_edit_loss_with_identity(tmp_path, vgg16_path):
    perceptual = PerceptualLoss(load_perceptual_network(vgg16_path))
    identity = IdentityLoss(load_face_embedder(write_mobilefacenet(tmp_path / "mfn.safetensors")))
    target, output = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    mask = torch.ones(2, 1, 64, 64)
    plain, plain_terms = edit_generator_loss(output, target, mask, None, None, perceptual)
    total, terms = edit_generator_loss(output, target, mask, None, None, perceptual, EditLossWeights(identity=0.5),
                                       identity)
    assert set(terms) == set(plain_terms) | {"identity"}
    assert torch.allclose(total, plain + 0.5 * terms["identity"]) and terms["identity"] > 0
    assert EditLossWeights().identity == 0  # existing configs train exactly as before
    with pytest.raises(ValueError, match="identity-weights"):
        edit_generator_loss(output, target, mask, None, None, perceptual, EditLossWeights(identity=0.5))
