"""The editing module: a U-Net that fills the masked region, composited onto the input."""

import torch
import torch.nn.functional as F

from .hub import HubModule
from .unet import UNet, UNetConfig


def composite(image: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """input × (1 − M) + generated × M: pixels outside the map come from the input unchanged."""
    return image * (1 - mask) + generated * mask


def grow_map(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """A binary N×1×H×W map grown by `pixels` in every direction (square element, as blend.dilate).

    `pixels` 3×3 maxima from shifted slices: on a 2-core CPU F.max_pool2d's 3×3 took 224 µs on a 128 px map,
    the slices 30 µs (the pipeline grows every map, and clean_maps spreads by it)."""
    for _ in range(pixels):
        padded = F.pad(mask, (1, 1, 1, 1))  # zeros past the edge: the map holds no negative values
        rows = torch.maximum(torch.maximum(padded[..., :-2, :], padded[..., 1:-1, :]), padded[..., 2:, :])
        mask = torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])
    return mask


def paint_growth(image: torch.Tensor, mask: torch.Tensor, grown: torch.Tensor, pixels: int) -> torch.Tensor:
    """`image` (N×C×H×W) with the pixels of `grown` outside `mask` (N×1×H×W in {0, 1}, `grown` at most `pixels`
    px beyond `mask`) painted from their neighbours in `mask`, ring by ring.

    The editor only ever saw holes full of fabric; a hole grown past the predicted map would show it the rim or
    the skin there, which it continues into the fill. Painted, the grown hole looks like the rest of the mask.
    """
    known, painted = mask, image
    for _ in range(pixels):
        total, weight = F.avg_pool2d(painted * known, 3, 1, 1), F.avg_pool2d(known, 3, 1, 1)
        ring = (grown > known) & (weight > 0)
        painted = torch.where(ring, total / weight.clamp_min(1e-6), painted)
        known = torch.maximum(known, ring.to(known.dtype))
    return painted


class EditGenerator(HubModule):
    """Editing module: image ⊕ map (4 channels) → RGB in [-1, 1]; `forward` returns the composited result.

    `block` and `dilated_blocks` pick the U-Net variant (see `unet.py`); like every init argument they are
    written to config.json, so a saved variant reloads as the same variant.
    """

    def __init__(self, base_channels: int = 32, max_channels: int = 192, depth: int = 5,
                 image_size: int = 128, dropout: float = 0.2, block: str = "single", dilated_blocks: int = 0):
        super().__init__()
        self.unet = UNet(UNetConfig(4, 3, base_channels, max_channels, depth, image_size, dropout,
                                    block, dilated_blocks))

    def generate(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The raw generated image (before compositing); `mask` is N×1×H×W in [0, 1]."""
        return self.unet(torch.cat([image, 2 * mask - 1], dim=1))

    def forward(self, image: torch.Tensor, mask: torch.Tensor, paste: torch.Tensor | None = None,
                raw: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Composited over `paste`, the region the output replaces (default: the map itself); with `raw`, also
        the generated image before compositing (for training losses on it)."""
        generated = self.generate(image, mask)
        output = composite(image, generated, mask if paste is None else paste)
        return (output, generated) if raw else output
