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

    def forward(self, image: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """The tanh map; with `logits=True` the logits 2h whose sigmoid equals (tanh(h) + 1) / 2 exactly,
        so the cross-entropy is computed stably (training calls it this way, through DDP's forward)."""
        return 2 * self.unet.pre_activation(image) if logits else self.unet(image)

    def probability(self, image: torch.Tensor) -> torch.Tensor:
        """P(mask pixel), N×1×H×W in [0, 1]."""
        return torch.sigmoid(self(image, logits=True))
