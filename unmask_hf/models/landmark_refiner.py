"""The landmark refiner: a masked face's five landmarks, corrected from the face itself.

MTCNN was trained on bare faces. On a masked face it guesses the nose and mouth under the fabric, and the guesses
pull the eyes, the scale and the angle with them: on FFHQ faces with rendered masks, the aligned crop was 6.9 px
(of 128) from where the same face unmasked puts it, on the median face, and 10 % or more off in scale on 43 % of
faces (a one-off measurement; `benchmarks/alignment.py` measures the same kind of error). The map module and the editor were trained on well-aligned crops, so every
stage after detection pays for it. `LandmarkRefiner` looks at a small crop aligned by the detector's landmarks, a
little wider than the working crop, and predicts where the five landmarks really are in it
(`faces.refine_landmarks`).
"""

import numpy as np
import torch
from torch import nn

from ..faces import TEMPLATE_LANDMARKS
from .hub import HubModule


def _block(channels_in: int, channels_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False), nn.BatchNorm2d(channels_out),
            nn.ReLU(inplace=True)]


class LandmarkRefiner(HubModule):
    """A small CNN: a face crop `size`×`size` whose field is `context` × the aligned crop's, aligned by rough
    landmarks → the five landmarks (TEMPLATE_LANDMARKS order) in that crop's pixels.

    Seven conv-BN-ReLU blocks, four of them stride 2, to 4×4, then two linear layers. The output is an offset from
    where the template puts the landmarks in the crop, so an untrained refiner returns the input alignment.
    `rounds`: how many times `faces.refine_landmarks` crops again by its own last landmarks (a second look
    recovers most of what a grossly misaligned first crop missed).
    """

    def __init__(self, size: int = 64, context: float = 1.3, width: int = 32, rounds: int = 1):
        super().__init__()
        if size % 16:
            raise ValueError(f"size must be a multiple of 16, got {size}")
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        self.size, self.context, self.width, self.rounds = size, context, width, rounds
        w = width
        self.features = nn.Sequential(*_block(3, w, 2), *_block(w, w, 1), *_block(w, 2 * w, 2), *_block(2 * w, 2 * w, 1),
                                      *_block(2 * w, 4 * w, 2), *_block(4 * w, 4 * w, 1), *_block(4 * w, 4 * w, 2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * (size // 16) ** 2, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, 10))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("template", torch.from_numpy(self.crop_template()), persistent=False)

    def crop_template(self) -> np.ndarray:
        """Where the five landmarks of a well-aligned face lie in this refiner's crop (5×2, pixels)."""
        return ((TEMPLATE_LANDMARKS - 0.5) / self.context + 0.5) * self.size

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Crops N×3×size×size in [-1, 1] → landmarks N×5×2 in crop pixels."""
        offsets = self.head(self.features(crops)).view(-1, 5, 2)
        return self.template.to(offsets.dtype) + offsets * (self.size / 4)
