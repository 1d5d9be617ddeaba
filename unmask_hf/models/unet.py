"""The modified U-Net both generators share (the paper's design, pix2pix-style), with editor design variants.

    x ─ first conv ─ enc1 ─ enc2 ─ … ─ enc_depth ─ [dilated residual blocks]
          │           │      │                               │
          └─ concat ◄─ dec1 ◄ dec2 ◄ … ◄──────────────────────┘
          final conv → tanh (no norm)

Blocks (`UNetConfig.block`):
    single  enc: conv 4×4 s2 → LeakyReLU → IN          dec: transposed conv s2 → ReLU → IN [→ dropout]
            (the paper's design and the embedded weights: with the defaults the modules and state_dict keys
            are exactly those of the released models)
    double  enc: single's, then conv 3×3 → LeakyReLU → IN   dec: single's, then conv 3×3 → ReLU → IN [→ dropout]
    gated   every encoder conv, the first included, is a gated convolution (Yu et al. 2019, "Free-Form Image
            Inpainting with Gated Convolution"): one conv gives features and a gate, act(features) × σ(gate),
            so the network learns per pixel and channel where the hole's garbage should not pass; decoders as single.
`dilated_blocks` > 0 adds that many residual blocks x + IN(conv_d(LeakyReLU(IN(conv_d(x))))) at the bottleneck,
dilation d cycling 1, 2, 4, 8 but capped at the bottleneck's side − 1: a larger d would put every tap but the
centre in the zero padding (a 1×1 conv with extra cost). They widen the receptive field where the hole is filled.
"""

from dataclasses import dataclass

import torch
from torch import nn

BLOCKS = ("single", "double", "gated")
DILATION_CYCLE = (1, 2, 4, 8)


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
    block: str = "single"
    dilated_blocks: int = 0

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
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {self.block!r}")
        if not isinstance(self.dilated_blocks, int) or isinstance(self.dilated_blocks, bool) or self.dilated_blocks < 0:
            raise ValueError(f"dilated_blocks must be a non-negative integer, got {self.dilated_blocks!r}")

    def channels(self, level: int) -> int:
        """Feature channels at a level: 0 is the first conv, `depth` the bottleneck."""
        return min(self.base_channels * 2**level, self.max_channels)

    def dilations(self) -> list[int]:
        """Dilation of each bottleneck residual block: 1, 2, 4, 8, 1, … capped below the bottleneck's side."""
        side = self.image_size // 2**self.depth
        return [min(DILATION_CYCLE[i % len(DILATION_CYCLE)], side - 1) for i in range(self.dilated_blocks)]


class GatedConv2d(nn.Module):
    """act(features) × sigmoid(gate), both from one conv with twice the output channels (Yu et al. 2019)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2 * out_channels, kernel_size, stride=stride, padding=padding)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, gate = self.conv(x).chunk(2, dim=1)
        return self.act(features) * torch.sigmoid(gate)


class DilatedResidualBlock(nn.Module):
    """x + IN(conv_d(LeakyReLU(IN(conv_d(x))))): same size in and out, receptive field grown by 4d."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation),
            nn.InstanceNorm2d(channels, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UNet(nn.Module):
    """Encoder-decoder with same-level skip connections; output in [-1, 1] (tanh of `pre_activation`)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        ch = config.channels
        gated = config.block == "gated"
        if gated:
            self.first = GatedConv2d(config.in_channels, ch(0), 3, padding=1)
        else:
            self.first = nn.Sequential(nn.Conv2d(config.in_channels, ch(0), 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        self.encoders = nn.ModuleList()
        for i in range(1, config.depth + 1):
            if gated:
                layers = [GatedConv2d(ch(i - 1), ch(i), 4, stride=2, padding=1), nn.InstanceNorm2d(ch(i), affine=True)]
            else:
                layers = [nn.Conv2d(ch(i - 1), ch(i), 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
                          nn.InstanceNorm2d(ch(i), affine=True)]
            if config.block == "double":
                layers += [nn.Conv2d(ch(i), ch(i), 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                           nn.InstanceNorm2d(ch(i), affine=True)]
            self.encoders.append(nn.Sequential(*layers))
        # Only when asked for: with dilated_blocks = 0 the module tree stays that of the released weights.
        self.bottleneck = None
        if config.dilated_blocks:
            self.bottleneck = nn.Sequential(*(DilatedResidualBlock(ch(config.depth), d) for d in config.dilations()))
        # decoders[i] maps level i+1 up to level i; its input is concatenated with the skip at level i+1
        # (except the bottleneck, which has no skip). Dropout on the three deepest, as in pix2pix.
        self.decoders = nn.ModuleList()
        for i in range(config.depth):
            in_ch = ch(i + 1) if i == config.depth - 1 else 2 * ch(i + 1)
            layers = [nn.ConvTranspose2d(in_ch, ch(i), 4, stride=2, padding=1), nn.ReLU(inplace=True), nn.InstanceNorm2d(ch(i), affine=True)]
            if config.block == "double":
                layers += [nn.Conv2d(ch(i), ch(i), 3, padding=1), nn.ReLU(inplace=True), nn.InstanceNorm2d(ch(i), affine=True)]
            if config.dropout > 0 and i >= config.depth - 3:
                layers.append(nn.Dropout(config.dropout))
            self.decoders.append(nn.Sequential(*layers))
        self.final = nn.Conv2d(2 * ch(0), config.out_channels, 3, padding=1)

    def pre_activation(self, x: torch.Tensor, extra: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """The final layer's output before tanh (the map loss works on it for numerical stability).
        `extra` maps an encoder level (1..depth) to features added to that level's output (pretrained features)."""
        skips = [self.first(x)]
        for level, encoder in enumerate(self.encoders, start=1):
            h = encoder(skips[-1])
            skips.append(h + extra[level] if extra and level in extra else h)
        h = skips.pop()
        if self.bottleneck is not None:
            h = self.bottleneck(h)
        for decoder in reversed(self.decoders):
            h = torch.cat([decoder(h), skips.pop()], dim=1)
        return self.final(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.pre_activation(x))
