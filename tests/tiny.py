"""A tiny frozen filter bank with the extractor interface (``TinyExtractor``), for fast tests of the
energies and models without VGG-16."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from frame.input_space import InputSpace


class IdentitySpace(InputSpace):
    """Chains live in the images' own space, [0, 1] RGB."""

    def to_input(self, images: Tensor) -> Tensor:
        return images.expand(-1, 3, -1, -1)

    def to_images(self, x: Tensor) -> Tensor:
        return x

    def bounds(self, device=None, dtype=None):
        return torch.zeros(1, 3, 1, 1, device=device, dtype=dtype), torch.ones(1, 3, 1, 1, device=device, dtype=dtype)


class TinyExtractor(nn.Module):
    """Two frozen conv+ReLU layers, 'a' (stride 1) and 'b' (stride 2), seeded."""

    def __init__(self, layers=("a", "b"), seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(4, 5, 3, stride=2, padding=1)
        for conv in (self.conv_a, self.conv_b):
            conv.weight.data = torch.randn(conv.weight.shape, generator=g) * 0.5
            conv.bias.data = torch.randn(conv.bias.shape, generator=g) * 0.1
        self.requires_grad_(False)
        self.layers = tuple(layers)
        self.input_space = IdentitySpace()

    def channels(self, layer: str) -> int:
        return {"a": 4, "b": 5}[layer]

    def check_image_size(self, size: int, key: str) -> None:
        if size < 2:
            raise ValueError(f"{key}={size} is too small")

    def feature_shape(self, layer: str, h: int, w: int):
        return (4, h, w) if layer == "a" else (5, (h + 1) // 2, (w + 1) // 2)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        a = torch.relu(self.conv_a(x))
        b = torch.relu(self.conv_b(a))
        return {k: v for k, v in (("a", a), ("b", b)) if k in self.layers}
