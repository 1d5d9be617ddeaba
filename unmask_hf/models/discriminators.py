"""The two discriminators of the editing module's adversarial losses.

- `WholeDiscriminator` sees the whole composited image: a PatchGAN judging global coherence
  (does the filled lower face fit the eyes, hair and lighting above it?).
- `MaskRegionDiscriminator` sees only the removed region: a square crop around the map's bounding box
  (plus a margin of context), resampled to a fixed size with `roi_align`, with the crop of the map as a
  fourth channel so it knows which pixels were generated. It judges detail inside the fill.
"""

import torch
from torch import nn
from torchvision.ops import roi_align

from .hub import HubModule


def patch_discriminator(in_channels: int, base_channels: int, layers: int) -> nn.Sequential:
    """PatchGAN stack: conv s2 → LeakyReLU (→ InstanceNorm after the first), ending in a 1-channel logit map."""
    blocks: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
    ch = base_channels
    for _ in range(layers - 1):
        blocks += [nn.Conv2d(ch, min(ch * 2, 8 * base_channels), 4, stride=2, padding=1),
                   nn.LeakyReLU(0.2, inplace=True), nn.InstanceNorm2d(min(ch * 2, 8 * base_channels), affine=True)]
        ch = min(ch * 2, 8 * base_channels)
    blocks.append(nn.Conv2d(ch, 1, 3, padding=1))
    return nn.Sequential(*blocks)


class WholeDiscriminator(HubModule):
    """PatchGAN over the whole RGB image in [-1, 1]; returns N×1×h×w real/fake logits."""

    def __init__(self, base_channels: int = 32, layers: int = 4):
        super().__init__()
        self.net = patch_discriminator(3, base_channels, layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


def mask_boxes(mask: torch.Tensor, margin: float = 0.1, min_size: float = 16.0) -> torch.Tensor:
    """Square boxes (x0, y0, x1, y1) around each map's foreground, grown by `margin`; the lower-middle face when empty."""
    n, _, h, w = mask.shape
    fg = mask[:, 0] > 0.5
    rows, cols = fg.any(dim=2), fg.any(dim=1)
    ar_w, ar_h = torch.arange(w, device=mask.device), torch.arange(h, device=mask.device)
    big = torch.tensor(10**6, device=mask.device)
    x0 = torch.where(rows, ar_w, big).amin(dim=1).float()
    x1 = torch.where(rows, ar_w, -big).amax(dim=1).float() + 1
    y0 = torch.where(cols, ar_h, big).amin(dim=1).float()
    y1 = torch.where(cols, ar_h, -big).amax(dim=1).float() + 1
    empty = ~fg.flatten(1).any(dim=1)
    default = torch.tensor([0.25 * w, 0.5 * h, 0.75 * w, 0.95 * h], device=mask.device)
    box = torch.where(empty[:, None], default, torch.stack([x0, y0, x1, y1], dim=1))
    centre = (box[:, :2] + box[:, 2:]) / 2
    half = ((box[:, 2:] - box[:, :2]).amax(dim=1) * (1 + margin)).clamp(min=min_size) / 2
    return torch.cat([centre - half[:, None], centre + half[:, None]], dim=1)


class MaskRegionDiscriminator(HubModule):
    """PatchGAN over a crop around the removed region (RGB ⊕ map, resampled to `region_size`)."""

    def __init__(self, base_channels: int = 32, layers: int = 3, region_size: int = 64):
        super().__init__()
        self.region_size = region_size
        self.net = patch_discriminator(4, base_channels, layers)

    def crop(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """RGB ⊕ (2·map − 1) cropped around each map's box, N×4×region×region."""
        boxes = mask_boxes(mask.detach())
        indexed = torch.cat([torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None], boxes], dim=1)
        x = torch.cat([image, 2 * mask - 1], dim=1)
        return roi_align(x, indexed.to(x.dtype), self.region_size, spatial_scale=1.0, sampling_ratio=2, aligned=True)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(self.crop(image, mask))
