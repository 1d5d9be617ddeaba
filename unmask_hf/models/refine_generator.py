"""The detail stage: the editor's fill, upscaled to 2× the working size, gets the fine detail a photo has there.

The editor works at 128 px, and a face in a 1-megapixel photo is 300-500 px across, so its fill is pasted
upscaled 2-4× and looks like a soft patch under sharp eyes. `RefineGenerator` sees the fill bicubic-upscaled 2×
inside the region and the photo's own pixels at that size around it, and adds a residual inside the region only.
It works on 2×2 pixel blocks (space-to-depth), so its convolutions run at the working size: a few ms per face.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .edit_generator import composite
from .hub import HubModule


def refine_inputs(crops: torch.Tensor, generated: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The refiner's input: crops N×3×(kS)×(kS) at k× the working size and the editor's raw output N×3×S×S
    (both in [-1, 1]), regions N×1×S×S in {0, 1} (the region pasted) → (crops with the output bicubic-upscaled
    inside the upscaled region, that region N×1×(kS)×(kS) in {0, 1})."""
    size = crops.shape[-1]
    big = F.interpolate(regions.float(), size=size, mode="bilinear", align_corners=False) >= 0.5  # as paste_back
    upscaled = F.interpolate(generated, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)
    big = big.to(crops.dtype)
    return composite(crops, upscaled, big), big


class ResidualBlock(nn.Module):
    """conv → LeakyReLU → conv, plus the input (no norm: it would wash out the detail this stage is for)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class RefineGenerator(HubModule):
    """Detail stage: (fill upscaled `scale`× over the photo's crop at that size, region) → the same crop with a
    learned residual added inside the region. The last conv starts at zero, so an untrained refiner returns the
    bicubic fill unchanged. `detail_only` takes the residual's local mean (a (2·scale+1)² box) away, so the refiner
    can add texture and edges but not move the fill's colour or shapes (the editor's mouth, its shading)."""

    def __init__(self, channels: int = 32, blocks: int = 3, scale: int = 2, detail_only: bool = False):
        super().__init__()
        self.scale = scale
        self.detail_only = detail_only
        self.head = nn.Sequential(nn.PixelUnshuffle(scale), nn.Conv2d(4 * scale**2, channels, 3, padding=1),
                                  nn.LeakyReLU(0.2))
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.tail = nn.Conv2d(channels, 3 * scale**2, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, coarse: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """coarse N×3×H×W in [-1, 1] (from `refine_inputs`), region N×1×H×W in {0, 1}; H, W multiples of `scale`."""
        features = self.body(self.head(torch.cat([coarse, 2 * region - 1], dim=1)))
        residual = self.shuffle(self.tail(features))
        if self.detail_only:
            side = 2 * self.scale + 1
            residual = residual - F.avg_pool2d(residual, side, stride=1, padding=side // 2, count_include_pad=False)
        refined = (coarse + residual).clamp(-1, 1)
        return composite(coarse, refined, region)
