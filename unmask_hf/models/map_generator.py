"""The map module: a U-Net that segments the face mask (1 = mask pixel)."""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .edit_generator import grow_map
from .hub import HubModule
from .mobilefacenet import FaceFeatureTrunk, load_mobilefacenet
from .unet import UNet, UNetConfig

# With face features, the trunk sees the crop at half size: its 1/4, 1/8, 1/16 taps then land on the U-Net's
# levels 3, 4, 5, and it costs a quarter of a full-size pass (the map's CPU budget is 10 ms a face).
FACE_FEATURE_LEVELS = (3, 4, 5)


class MapGenerator(HubModule):
    """Map module: RGB face crop in [-1, 1] → tanh map in [-1, 1]; `probability` turns it into P(mask pixel).
    `block` and `dilated_blocks` pick the U-Net variant (see `unet.py`), saved in config.json like the rest.

    `face_features=True` adds pretrained features from real faces: a frozen MobileFaceNet trunk
    (`FaceFeatureTrunk`, loaded with `load_face_trunk`) on the half-size crop, each tap projected by a 1×1 conv and
    added to the encoder's output at levels 3-5. The projections start at zero, so the module starts as the U-Net
    alone and learns how much to use them.
    """

    def __init__(self, base_channels: int = 16, max_channels: int = 128, depth: int = 5,
                 image_size: int = 128, dropout: float = 0.2, block: str = "single", dilated_blocks: int = 0,
                 face_features: bool = False):
        super().__init__()
        config = UNetConfig(3, 1, base_channels, max_channels, depth, image_size, dropout, block, dilated_blocks)
        if face_features and depth < max(FACE_FEATURE_LEVELS):
            raise ValueError(f"face_features needs depth >= {max(FACE_FEATURE_LEVELS)}, got {depth}")
        self.unet = UNet(config)
        # Only when asked for: without them the module tree stays that of the released weights.
        self.face_trunk = self.face_projections = None
        if face_features:
            self.face_trunk = FaceFeatureTrunk()
            self.face_projections = nn.ModuleList(
                nn.Conv2d(c, config.channels(level), 1) for c, level in zip(FaceFeatureTrunk.CHANNELS, FACE_FEATURE_LEVELS))
            for conv in self.face_projections:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def load_face_trunk(self, weights_path: str | Path) -> None:
        """Load the pretrained MobileFaceNet weights (safetensors) into the face-feature trunk."""
        if self.face_trunk is None:
            raise ValueError("this map module has no face features (face_features=False)")
        pretrained = FaceFeatureTrunk(load_mobilefacenet(weights_path))
        self.face_trunk.load_state_dict(pretrained.state_dict())

    def _face_features(self, image: torch.Tensor) -> dict[int, torch.Tensor] | None:
        if self.face_trunk is None:
            return None
        half = F.interpolate(image, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
        taps = self.face_trunk(half)
        return {level: conv(tap) for level, conv, tap in zip(FACE_FEATURE_LEVELS, self.face_projections, taps)}

    def forward(self, image: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """The tanh map; with `logits=True` the logits 2h whose sigmoid equals (tanh(h) + 1) / 2 exactly,
        so the cross-entropy is computed stably (training calls it this way, through DDP's forward)."""
        h = self.unet.pre_activation(image, self._face_features(image))
        return 2 * h if logits else torch.tanh(h)

    def probability(self, image: torch.Tensor) -> torch.Tensor:
        """P(mask pixel), N×1×H×W in [0, 1]."""
        return torch.sigmoid(self(image, logits=True))


def with_face_features(map_generator: MapGenerator, weights_path: str | Path) -> MapGenerator:
    """A copy of a trained map module with pretrained face features added (MobileFaceNet weights from
    `weights_path`): it gives the same maps until training moves the zero-initialised projections."""
    config = {**map_generator._hub_mixin_config, "face_features": True}
    extended = MapGenerator(**config)
    missing, unexpected = extended.load_state_dict(map_generator.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("face_trunk.", "face_projections.")) for k in missing)
    extended.load_face_trunk(weights_path)
    return extended


def _propagate(values: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Spread the maximum of `values` through 8-connected `allowed` pixels until nothing changes."""
    while True:
        for _ in range(8):  # check convergence every few steps: each check syncs
            values = torch.where(allowed, F.max_pool2d(values, 3, stride=1, padding=1), values)
        grown = torch.where(allowed, F.max_pool2d(values, 3, stride=1, padding=1), values)
        if torch.equal(grown, values):
            return values
        values = grown


@torch.no_grad()
def clean_maps(maps: torch.Tensor, min_fraction: float = 0.1, work_size: int = 32) -> torch.Tensor:
    """Binary maps N×1×H×W → the same without specks (connected parts smaller than `min_fraction` of each
    map's largest part) and with enclosed holes filled: a face mask is one solid piece of fabric.

    Connectivity is found on a copy max-pooled to at most `work_size` pixels a side (fast: the propagation
    takes as many steps as a part is wide), then applied to the full-resolution map, where the holes narrower than
    a pooled pixel are found by spreading the pooled outside one pooled pixel further.
    """
    n, _, h, w = maps.shape
    full = maps > 0.5
    factor = max(1, max(h, w) // work_size)
    fg = F.max_pool2d(full.float(), factor) > 0 if factor > 1 else full
    sh, sw = fg.shape[-2:]
    ids = torch.arange(1, sh * sw + 1, device=maps.device, dtype=torch.float32).view(1, 1, sh, sw).expand(n, 1, sh, sw)
    labels = _propagate(torch.where(fg, ids, torch.zeros_like(ids)), fg)  # each part takes its largest pixel id
    # Every part's size, all maps at once (labels are pixel ids: count them per map), then keep the big parts.
    # No per-map loop: on a GPU each pass of such a loop waits for the device.
    flat = labels.reshape(n, -1).long()
    sizes = torch.zeros(n, sh * sw + 1, device=maps.device).scatter_add_(1, flat, fg.reshape(n, -1).float())
    sizes[:, 0] = 0  # id 0 is the background
    big = sizes >= min_fraction * sizes.amax(dim=1, keepdim=True)
    keep = torch.gather(big, 1, flat).view_as(fg) & fg
    border = torch.zeros_like(keep)
    border[..., 0, :] = border[..., -1, :] = border[..., :, 0] = border[..., :, -1] = True
    outside = _propagate((~keep & border).float(), ~keep) > 0  # background reachable from the edge
    solid = ~outside
    if factor > 1:
        def up(coarse: torch.Tensor) -> torch.Tensor:
            return F.interpolate(coarse.float(), size=(h, w), mode="nearest") > 0

        # full-resolution detail: the map's own pixels inside kept parts, plus the pooled pixels found enclosed
        solid = (full & up(keep)) | (up(solid) & ~up(fg))
        # then the background within a pooled pixel of the pooled outside or the border is outside, the rest a hole:
        # gaps between pleats or in a print narrower than a pooled pixel, which the editor would keep as fabric to
        # continue (a fixed number of steps, not a propagation to the end: that cost 4-10 ms a face, the map
        # module's own time)
        border = torch.zeros_like(solid)
        border[..., 0, :] = border[..., -1, :] = border[..., :, 0] = border[..., :, -1] = True
        reached = (up(outside) | (border & ~solid)).float()
        for _ in range(factor + 1):
            reached = torch.where(solid, reached, grow_map(reached, 1))
        solid = reached == 0
    return solid.to(maps.dtype)
