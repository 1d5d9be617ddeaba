"""The base of the pretrained networks the project only measures with (perceptual VGG features, face embeddings)."""

import torch
from torch import nn


class FrozenNetwork(nn.Module):
    """A pretrained network used as a fixed measure: no gradients to its weights, always in eval mode (batch-norm
    statistics and dropout included, even inside a module put in train mode), with the input normalisation `mean`
    and `std` as non-persistent buffers (they follow `.to()`; state dicts hold the weights only).

    Subclasses set their layers, then call `freeze()`.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenNetwork":
        return super().train(False)

    @staticmethod
    def tapped(x: torch.Tensor, layers: nn.Sequential, taps: tuple[int, ...]) -> list[torch.Tensor]:
        """Run `x` through `layers` in order; the outputs of the layers at the indices `taps`."""
        out = []
        for i, layer in enumerate(layers):
            x = layer(x)
            if i in taps:
                out.append(x)
        return out
