"""The map module: a U-Net that segments the face mask (1 = mask pixel)."""

import torch

from .hub import HubModule
from .unet import UNet, UNetConfig


class MapGenerator(HubModule):
    """Map module: RGB face crop in [-1, 1] → tanh map in [-1, 1]; `probability` turns it into P(mask pixel)."""

    def __init__(self, base_channels: int = 16, max_channels: int = 128, depth: int = 5,
                 image_size: int = 128, dropout: float = 0.2):
        super().__init__()
        self.unet = UNet(UNetConfig(3, 1, base_channels, max_channels, depth, image_size, dropout))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.unet(image)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits whose sigmoid equals (tanh + 1) / 2 exactly, for a stable cross-entropy."""
        return 2 * self.unet.pre_activation(image)

    def probability(self, image: torch.Tensor) -> torch.Tensor:
        """P(mask pixel), N×1×H×W in [0, 1]."""
        return torch.sigmoid(self.logits(image))
