"""MobileFaceNet (Chen et al. 2018), a face-recognition network, frozen: the editor's identity loss, and the map
module's optional pretrained face features (`FaceFeatureTrunk`).

The layout (module and key names) is that of the weights published by foamliu/MobileFaceNet (trained on
MS-Celeb-1M, 128-D embeddings), so its state dict loads strictly. Its input is a 112×112 RGB face aligned to the
ArcFace 5-point template, /255 and ImageNet-normalised; `FaceEmbedder` does that warp and normalisation itself,
differentiably, from the project's aligned crops (unmask_hf.faces.TEMPLATE_LANDMARKS framing) at any size.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..faces import TEMPLATE_LANDMARKS, similarity_matrix
from .frozen import FrozenNetwork

# The standard ArcFace template (112×112 pixels): eyes, nose tip, mouth corners (image left/right).
ARCFACE_SIZE = 112
ARCFACE_LANDMARKS = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                              [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Larger crops are first reduced (antialiased) to this side, where the ArcFace warp is about 1:1: bilinear
# grid_sample alone would alias when it shrinks a 256 px crop 2x.
MAX_WARP_SIZE = 160


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class _DepthwiseSeparable(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.pointwise(F.relu(self.bn1(self.depthwise(x))))))


class _Bottleneck(nn.Module):
    """MobileNetV2's inverted residual: expand 1×1, depthwise 3×3, linear 1×1; a skip when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        conv = [_conv_bn(cin, hidden), _conv_bn(hidden, hidden, 3, stride, groups=hidden)]
        # Keys conv.2 / conv.3 are the linear projection and its norm, flat (as in the published weights).
        self.conv = nn.Sequential(*conv, nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class _GlobalDepthwise(nn.Module):
    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.depthwise(x))


class MobileFaceNet(nn.Module):
    """112×112 normalised faces N×3×112×112 → N×128 embeddings (not normalised; compare by cosine)."""

    # (expansion, output channels, blocks, first stride) of the bottleneck stages.
    STAGES = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))

    def __init__(self, embedding_size: int = 128):
        super().__init__()
        self.conv1 = _conv_bn(3, 64, 3, stride=2)
        self.dw_conv = _DepthwiseSeparable(64)
        blocks, cin = [], 64
        for expand, cout, count, stride in self.STAGES:
            for i in range(count):
                blocks.append(_Bottleneck(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        self.features = nn.Sequential(*blocks)
        self.conv2 = _conv_bn(cin, 512)
        self.gdconv = _GlobalDepthwise(512, 7)  # 7×7 is the feature map of a 112 px input
        self.conv3 = nn.Conv2d(512, embedding_size, 1)
        self.bn = nn.BatchNorm2d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.features(self.dw_conv(self.conv1(x))))
        return self.bn(self.conv3(self.gdconv(x))).flatten(1)


def crop_to_arcface_theta(crop_size: int) -> torch.Tensor:
    """The 2×3 `F.affine_grid` matrix that resamples a crop_size crop (TEMPLATE_LANDMARKS framing) to the ArcFace
    112×112 framing: normalised output coordinates → normalised input coordinates (align_corners=False)."""
    to_arcface = np.vstack([similarity_matrix(TEMPLATE_LANDMARKS * crop_size, ARCFACE_LANDMARKS), [0, 0, 1]])
    out_from_norm = np.array([[ARCFACE_SIZE / 2, 0, ARCFACE_SIZE / 2], [0, ARCFACE_SIZE / 2, ARCFACE_SIZE / 2], [0, 0, 1]])
    norm_from_in = np.array([[2 / crop_size, 0, -1], [0, 2 / crop_size, -1], [0, 0, 1]])
    return torch.tensor((norm_from_in @ np.linalg.inv(to_arcface) @ out_from_norm)[:2], dtype=torch.float32)


class FaceEmbedder(FrozenNetwork):
    """A frozen MobileFaceNet on the project's aligned crops: N×3×S×S in [-1, 1] → unit N×128 embeddings.

    The crop is warped to the ArcFace framing with a fixed similarity transform (bilinear `grid_sample`), so
    gradients reach every crop pixel the network sees. Crops over MAX_WARP_SIZE are reduced first.
    """

    def __init__(self, network: MobileFaceNet):
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        self.network = network
        self.freeze()

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        n, _, h, w = crops.shape
        if h != w:
            raise ValueError(f"expected square aligned crops, got {h}×{w}")
        crops = crops.float()
        if h > MAX_WARP_SIZE:
            crops = F.interpolate(crops, size=MAX_WARP_SIZE, mode="bilinear", antialias=True, align_corners=False)
            h = MAX_WARP_SIZE
        theta = crop_to_arcface_theta(h).to(crops.device).expand(n, 2, 3)
        grid = F.affine_grid(theta, [n, 3, ARCFACE_SIZE, ARCFACE_SIZE], align_corners=False)
        faces = F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)
        faces = ((faces + 1) / 2 - self.mean) / self.std
        return F.normalize(self.network(faces), dim=1)


def load_mobilefacenet(weights_path: str | Path) -> MobileFaceNet:
    """MobileFaceNet from its safetensors file (any float dtype), loaded strictly.
    Raises RuntimeError when the file is missing or does not fit the architecture."""
    from safetensors.torch import load_file

    if not Path(weights_path).is_file():
        raise RuntimeError(f"MobileFaceNet weights file not found: {str(weights_path)!r}; pass a MobileFaceNet "
                           "safetensors file with --identity-weights PATH")
    state = load_file(str(weights_path))
    network = MobileFaceNet()
    try:
        network.load_state_dict({k: v if k.endswith("num_batches_tracked") else v.float() for k, v in state.items()})
    except RuntimeError as e:
        raise RuntimeError(f"{weights_path}: weights do not fit MobileFaceNet: {e}") from e
    return network


def load_face_embedder(weights_path: str | Path) -> FaceEmbedder:
    """The frozen embedder from a MobileFaceNet safetensors file (see `load_mobilefacenet`)."""
    return FaceEmbedder(load_mobilefacenet(weights_path))


class FaceFeatureTrunk(FrozenNetwork):
    """MobileFaceNet's convolutional trunk, frozen: crops N×3×S×S in [-1, 1] (the project's framing, no warp) →
    features at 1/4, 1/8 and 1/16 of S (64, 128, 128 channels), the ends of its stride-2 stages.

    Learnt from real faces, they tell skin, chin and neck from what covers them where a renderer's masks give out;
    the map module adds them to its own encoder (`MapGenerator(face_features=True)`).
    """

    TAPS = (4, 11, 14)  # `features` blocks that end the 1/4, 1/8 and 1/16 stages
    CHANNELS = (64, 128, 128)

    def __init__(self, network: MobileFaceNet | None = None):
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        network = network or MobileFaceNet()
        self.conv1, self.dw_conv = network.conv1, network.dw_conv
        self.features = network.features[:self.TAPS[-1] + 1]
        self.freeze()

    def forward(self, crops: torch.Tensor) -> list[torch.Tensor]:
        return self.tapped(self.dw_conv(self.conv1(((crops + 1) / 2 - self.mean) / self.std)), self.features, self.TAPS)
