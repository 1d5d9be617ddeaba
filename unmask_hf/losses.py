"""Training losses: SSIM, the VGG perceptual network, the identity loss, the GAN losses, the map loss and the
editor's joint loss.

All losses take model tensors: images float NCHW in [-1, 1], masks/maps (N, 1, H, W) in [0, 1] (1 = face-mask pixel).
"""

import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.vgg import cfgs, make_layers

from .models.frozen import FrozenNetwork
from .models.mobilefacenet import FaceEmbedder

# ---------------------------------------------------------------------------- SSIM


def _gaussian_window(window_size: int, sigma: float, device: torch.device) -> torch.Tensor:
    coords = torch.arange(window_size, dtype=torch.float32, device=device) - (window_size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: torch.Tensor, y: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0), window_size: int = 11
) -> torch.Tensor:
    """Differentiable SSIM (Wang et al. 2004) with an 11-tap Gaussian window (sigma 1.5), one value per image (N,).

    value_range is the images' (low, high): (-1, 1) for model tensors, (0, 255) for uint8-valued ones.
    Images are shifted to [0, high - low] first, because SSIM's luminance term assumes non-negative
    intensities (on [-1, 1] it turns negative for means of opposite sign), so the loss and the reported metric
    are the same number. Statistics use 'valid' windows only (no padding), averaged over channels and
    positions, matching skimage's structural_similarity(gaussian_weights=True, use_sample_covariance=False).
    Images smaller than the window use a window as large as the image (odd size).
    """
    # SSIM divides small differences of squares: always compute it in float32, even under bf16/fp16 autocast.
    with torch.autocast(x.device.type, enabled=False):
        low, high = value_range
        x, y = x.float() - low, y.float() - low
        data_range = high - low
        _, c, h, w = x.shape
        window_size = min(window_size, h, w)
        window_size -= 1 - window_size % 2  # keep it odd
        g = _gaussian_window(window_size, 1.5, x.device)
        # One separable depthwise blur over the five maps the statistics need.
        maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)
        maps = F.conv2d(maps, g.view(1, 1, 1, -1).expand(5 * c, 1, 1, window_size), groups=5 * c)
        maps = F.conv2d(maps, g.view(1, 1, -1, 1).expand(5 * c, 1, window_size, 1), groups=5 * c)
        mu_x, mu_y, xx, yy, xy = maps.split(c, dim=1)
        var_x = xx - mu_x * mu_x
        var_y = yy - mu_y * mu_y
        cov = xy - mu_x * mu_y
        c1 = (0.01 * data_range) ** 2
        c2 = (0.03 * data_range) ** 2
        s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        return s.mean(dim=(1, 2, 3))


# ---------------------------------------------------------------------------- perceptual network

# Index of relu1_2, relu2_2, relu3_3|3_4, relu4_3|4_4 in torchvision's vgg16|vgg19().features.
VGG_RELU_LAYERS = {"vgg16": (3, 8, 15, 22), "vgg19": (3, 8, 17, 26)}
_VGG_CFG_NAMES = {"vgg16": "D", "vgg19": "E"}  # torchvision.models.vgg.cfgs keys
# Input conventions: x_vgg = ((x + 1) / 2 * scale - mean) / std.
TORCHVISION_NORM = dict(scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CAFFE_NORM = dict(scale=255.0, mean=(123.68, 116.779, 103.939), std=(1.0, 1.0, 1.0))


class VGGFeatures(FrozenNetwork):
    """A frozen VGG feature stack: images in [-1, 1] -> list of relu features (relu1_2, relu2_2, relu3_x, relu4_x).

    It converts its input to the convention of its weights itself (torchvision's ImageNet normalisation,
    or Caffe's 0..255 minus the mean pixel). `arch` says which VGG it is; FD-VGG values are only
    comparable between runs that use the same network.
    """

    def __init__(self, features: nn.Sequential, layer_ids: tuple[int, ...], arch: str,
                 scale: float, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__(mean, std)
        self.features = features[: layer_ids[-1] + 1]
        self.layer_ids = tuple(layer_ids)
        self.arch = arch
        self.scale = scale
        self.freeze()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.tapped(((x + 1) * (self.scale / 2) - self.mean) / self.std, self.features, self.layer_ids)


def _vgg_from_safetensors(path: str) -> VGGFeatures:
    from safetensors.torch import load_file

    state = {k: v.float() for k, v in load_file(path).items()}  # the shared file is fp16
    try:
        conv_ids = sorted({int(k.split(".")[0]) for k in state})
    except ValueError:
        raise RuntimeError(f"{path}: keys {sorted(state)[:4]}... are not a torchvision vgg().features state_dict")
    for arch, cfg in _VGG_CFG_NAMES.items():
        layers = make_layers(cfgs[cfg])
        arch_convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
        if conv_ids == arch_convs[: len(conv_ids)]:
            break
    else:
        raise RuntimeError(f"{path}: conv layers {conv_ids} match neither VGG-16 nor VGG-19 features")
    layer_ids = tuple(i for i in VGG_RELU_LAYERS[arch] if i <= conv_ids[-1] + 1)
    if not layer_ids:
        raise RuntimeError(f"{path}: too few conv layers ({conv_ids}) to reach relu1_2")
    features = layers[: conv_ids[-1] + 2]
    try:
        features.load_state_dict(state)
    except RuntimeError as e:
        raise RuntimeError(f"{path}: weights do not fit {arch} features: {e}") from e
    # Local weights follow the original (Caffe) VGG convention, as documented for the shared file.
    return VGGFeatures(features, layer_ids, arch, **CAFFE_NORM)


def load_perceptual_network(weights_path: str | None = None) -> VGGFeatures:
    """The frozen perceptual network (VGGFeatures).

    Default: torchvision's VGG-19 with ImageNet weights (downloaded on first use).
    With weights_path: a local safetensors VGG-16/19 feature stack (keys as torchvision's vgg().features
    state_dict, any dtype, Caffe input convention); the architecture and depth are read from the keys.
    Raises RuntimeError when the weights cannot be loaded, never falls back silently.
    """
    if weights_path is not None:
        if not os.path.isfile(weights_path):
            raise RuntimeError(f"perceptual weights file not found: {weights_path!r}; "
                               "pass an existing safetensors VGG feature stack with --perceptual-weights PATH")
        return _vgg_from_safetensors(weights_path)
    from torchvision.models import VGG19_Weights, vgg19

    try:
        features = vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features
    except Exception as e:
        raise RuntimeError(
            f"could not load torchvision's VGG-19 ImageNet weights ({type(e).__name__}: {e}); without internet, "
            "pass a local safetensors VGG feature stack with --perceptual-weights PATH"
        ) from e
    return VGGFeatures(features, VGG_RELU_LAYERS["vgg19"], "vgg19", **TORCHVISION_NORM)


class PerceptualLoss(nn.Module):
    """Content and style distances between VGG features of output and target, from one pass: (content, style).

    Content: L1 between the features, averaged over the network's layers. Style: L1 between their Gram
    matrices (channel x channel feature correlations, averaged over positions; Gatys et al., used for inpainting
    texture by PConv and EdgeConnect), averaged over the same layers. Gram matrices ignore where a feature fires,
    so style rewards the fill for having the truth's texture statistics (pores, stubble, grain) even where it
    cannot place them pixel-exactly, which L1 and content features average away into a smooth patch.
    Each layer's L1 is divided by the target's mean magnitude on that layer (features or Gram), so every layer
    counts about equally and the value does not depend on the network's input convention (Caffe inputs span
    0..255, torchvision's about +-2.5, so raw feature differences are ~60x apart): a loss weight means the same
    with either network. Raw per-layer content L1s measured 6..95 on faces with the shared VGG-16, normalised
    ones 0.05..0.6. No gradient flows into the target.
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    @staticmethod
    def _gram(f: torch.Tensor) -> torch.Tensor:
        f = f.flatten(2)
        return f @ f.transpose(1, 2) / f.shape[2]

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            target_features = self.network(target)
        content, style = [], []
        for f, t in zip(self.network(output), target_features):
            f, t = f.float(), t.float()
            content.append((f - t).abs().mean() / (t.abs().mean() + 1e-6))
            gram_t = self._gram(t)
            style.append((self._gram(f) - gram_t).abs().mean() / (gram_t.abs().mean() + 1e-6))
        return torch.stack(content).mean(), torch.stack(style).mean()


# ---------------------------------------------------------------------------- identity


class IdentityLoss(nn.Module):
    """1 - cosine similarity of face embeddings of output and target (`models.mobilefacenet.FaceEmbedder`), averaged
    over the batch: 0 when a face-recognition network sees the same person. No gradient flows into the target."""

    def __init__(self, embedder: FaceEmbedder):
        super().__init__()
        self.embedder = embedder

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_embedding = self.embedder(target)
        return 1 - (self.embedder(output) * target_embedding).sum(1).mean()


# ---------------------------------------------------------------------------- adversarial
# Hinge loss (SAGAN, BigGAN, SPADE): the discriminator gets no gradient from samples it already separates by
# the margin, so it cannot run away from the generator, and its loss stays bounded (no log/exp overflow under
# bf16). LSGAN would keep pushing confident logits quadratically. Logits may be per-patch maps; all are averaged.


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of a discriminator: mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))."""
    return F.relu(1 - real_logits.float()).mean() + F.relu(1 + fake_logits.float()).mean()


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the generator: -mean(D(fake))."""
    return -fake_logits.float().mean()


# ---------------------------------------------------------------------------- map module


def map_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0,
             mask_weight: float = 1.0) -> torch.Tensor:
    """BCE-with-logits plus soft Dice on sigmoid(logits); target in {0, 1}, shapes (N, 1, H, W).

    Dice counts the mask as a whole, so small masks are not drowned by the many background pixels of BCE.
    It is computed per image with +1 smoothing (an image without a mask and an empty prediction scores 0).
    `mask_weight` > 1 weighs BCE on mask pixels that much more than on the rest: a missed mask pixel costs more
    than a spilled one (real photos' masks are missed more often than rendered ones, see README).
    """
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=logits.new_tensor(mask_weight))
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice_weight * dice.mean()


# ---------------------------------------------------------------------------- editing module


@dataclass(frozen=True)
class EditLossWeights:
    """Weights of the editor's joint loss: rc * (l1 * L1 + ssim * (1 - SSIM) + perceptual * L_perc + style * L_style)
    + identity * L_id + whole * L_adv(whole image) + mask * L_adv(mask region).

    The defaults keep the reconstruction terms in charge (each is ~0.1-0.5 early in training) and the two
    adversarial terms small, as a sharpening signal rather than the main objective (pix2pix-style ratio).
    """

    rc: float = 1.0
    l1: float = 1.0
    ssim: float = 1.0
    perceptual: float = 1.0
    style: float = 0.0  # VGG Gram matrices, from the perceptual pass (needs the perceptual network)
    whole: float = 0.01
    mask: float = 0.01
    identity: float = 0.0  # needs a face-recognition network (train.py --identity-weights)
    # L1 of the raw output (before compositing) against the truth outside the region it replaces: the last
    # layers blur whatever lies beyond that region into its edge, so it should be the photo, not noise
    outside: float = 0.0


def masked_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the mask's pixels (all channels), normalised over the whole batch."""
    err = (output.float() - target.float()).abs() * mask.float()
    return err.sum() / (mask.float().sum() * output.shape[1]).clamp_min(1.0)


def edit_generator_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    whole_fake_logits: torch.Tensor | None,
    region_fake_logits: torch.Tensor | None,
    perceptual: PerceptualLoss | None,
    weights: EditLossWeights = EditLossWeights(),
    identity: IdentityLoss | None = None,
    generated: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The editing module's joint loss; returns (total, every term by name, detached, for logging).

    `output` is the composite masked*(1-mask) + generated*mask, so pixels outside the mask are exact.
    L1 is therefore averaged over the mask's pixels only (a whole-image mean would shrink the loss and its
    gradient in proportion to the mask area, training small masks less than large ones).
    SSIM and the perceptual loss are taken on the whole composite: they need the context around the mask
    to judge the seam, and windows/features that never see the mask contribute exactly zero anyway.
    The identity loss compares whole faces too (the output's lower face with its own eyes); it is computed
    when `identity` is given and weighted by weights.identity (a weight > 0 without it is an error); the
    perceptual and style terms likewise when `perceptual` is given (None: left out, e.g. at weight 0, where the VGG
    pass would cost several times the editor's own step on a CPU).
    `generated`, the raw output before compositing, is needed when weights.outside > 0.
    Terms: l1, ssim (= 1 - SSIM), perceptual, style, rc, identity, outside, adv_whole, adv_mask, total. A discriminator's logits
    may be None (e.g. before the adversarial warm-up ends): its term is then left out of the total and of the terms.
    """
    if weights.identity > 0 and identity is None:
        raise ValueError("loss weight identity > 0 needs an identity network (train.py --identity-weights PATH)")
    if (weights.perceptual > 0 or weights.style > 0) and perceptual is None:
        raise ValueError("loss weights perceptual or style > 0 need the perceptual network (train.py --perceptual-weights PATH)")
    l1 = masked_l1(output, target, mask)
    ssim_loss = 1 - ssim(output, target).mean()
    rc = weights.l1 * l1 + weights.ssim * ssim_loss
    terms = dict(l1=l1, ssim=ssim_loss)
    if perceptual is not None:
        terms["perceptual"], terms["style"] = perceptual(output, target)
        rc = rc + weights.perceptual * terms["perceptual"] + weights.style * terms["style"]
    terms["rc"] = rc
    total = weights.rc * rc
    if identity is not None:
        terms["identity"] = identity(output, target)
        total = total + weights.identity * terms["identity"]
    if weights.outside > 0:
        if generated is None:
            raise ValueError("loss weight outside > 0 needs the raw generated image (generated=...)")
        terms["outside"] = masked_l1(generated, target, 1 - mask)
        total = total + weights.outside * terms["outside"]
    adversarial = [("adv_whole", whole_fake_logits, weights.whole), ("adv_mask", region_fake_logits, weights.mask)]
    for name, logits, weight in adversarial:
        if logits is not None:
            terms[name] = generator_adversarial_loss(logits)
            total = total + weight * terms[name]
    terms["total"] = total
    return total, {k: v.detach() for k, v in terms.items()}
