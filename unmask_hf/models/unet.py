"""The modified U-Net both generators share (the paper's design, pix2pix-style).

    x ─ first conv ─ enc1 ─ enc2 ─ … ─ enc_depth          (each enc: conv s2 → LeakyReLU → InstanceNorm)
          │           │      │             │
          └─ concat ◄─ dec1 ◄ dec2 ◄ … ◄──┘               (each dec: transposed conv s2 → ReLU → InstanceNorm [→ dropout])
          final conv → tanh (no norm)
"""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class UNetConfig:
    """Shape of a U-Net: validated here so a bad config fails with a clear message, not a shape error."""

    in_channels: int
    out_channels: int
    base_channels: int = 32
    max_channels: int = 128
    depth: int = 5
    image_size: int = 128
    dropout: float = 0.2

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "base_channels", "max_channels", "depth", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_channels < self.base_channels:
            raise ValueError(f"max_channels ({self.max_channels}) must be >= base_channels ({self.base_channels})")
        if self.image_size % 2**self.depth or self.image_size // 2**self.depth < 2:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of 2**depth = {2**self.depth} "
                f"and leave at least 2×2 at the bottleneck (depth {self.depth})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def channels(self, level: int) -> int:
        """Feature channels at a level: 0 is the first conv, `depth` the bottleneck."""
        return min(self.base_channels * 2**level, self.max_channels)


class UNet(nn.Module):
    """Encoder-decoder with same-level skip connections; output in [-1, 1] (tanh of `pre_activation`)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        ch = config.channels
        self.first = nn.Sequential(nn.Conv2d(config.in_channels, ch(0), 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        self.encoders = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(ch(i - 1), ch(i), 4, stride=2, padding=1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.InstanceNorm2d(ch(i), affine=True),
            )
            for i in range(1, config.depth + 1)
        )
        # decoders[i] maps level i+1 up to level i; its input is concatenated with the skip at level i+1
        # (except the bottleneck, which has no skip). Dropout on the three deepest, as in pix2pix.
        self.decoders = nn.ModuleList()
        for i in range(config.depth):
            in_ch = ch(i + 1) if i == config.depth - 1 else 2 * ch(i + 1)
            layers = [nn.ConvTranspose2d(in_ch, ch(i), 4, stride=2, padding=1), nn.ReLU(inplace=True), nn.InstanceNorm2d(ch(i), affine=True)]
            if config.dropout > 0 and i >= config.depth - 3:
                layers.append(nn.Dropout(config.dropout))
            self.decoders.append(nn.Sequential(*layers))
        self.final = nn.Conv2d(2 * ch(0), config.out_channels, 3, padding=1)

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The final layer's output before tanh (the map loss works on it for numerical stability)."""
        skips = [self.first(x)]
        for encoder in self.encoders:
            skips.append(encoder(skips[-1]))
        h = skips.pop()
        for decoder in reversed(self.decoders):
            h = torch.cat([decoder(h), skips.pop()], dim=1)
        return self.final(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.pre_activation(x))
