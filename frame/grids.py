"""Image grids as PNG files, with torch and Pillow only.

``make_grid`` tiles images ``[N, C, H, W]`` in [0, 1] (grey shown as RGB) row by row with
``padding`` pixels of ``pad_value`` between and around them, as ``torchvision.utils.make_grid``
does; ``save_grid`` writes the grid with Pillow. Importing torchvision would load its whole
model zoo (its ``__init__`` imports ``torchvision.models``) just to write a PNG.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def make_grid(images: Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> Tensor:
    """``[3, H', W']``: the images ``[N, C, H, W]`` (or one ``[C, H, W]``), ``nrow`` per row;
    one image alone comes back unpadded."""
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, 1 or 3, H, W], got shape {tuple(images.shape)}")
    images = images.expand(-1, 3, -1, -1)
    if len(images) == 1:
        return images[0]
    n, channels, height, width = images.shape
    columns = min(nrow, n)
    rows = math.ceil(n / columns)
    grid = images.new_full((channels, rows * (height + padding) + padding, columns * (width + padding) + padding), pad_value)
    for index, image in enumerate(images):
        top, left = cell_origin(index, n, (height, width), nrow, padding)
        grid[:, top : top + height, left : left + width] = image
    return grid


def cell_origin(index: int, n: int, size: tuple[int, int], nrow: int = 8, padding: int = 2) -> tuple[int, int]:
    """``(top, left)`` of image ``index`` of ``n`` (each ``size = (height, width)``) in :func:`make_grid`'s grid."""
    row, column = divmod(index, min(nrow, n))
    return row * (size[0] + padding) + padding, column * (size[1] + padding) + padding


def to_uint8(grid: Tensor) -> np.ndarray:
    """``[3, H, W]`` in [0, 1] -> ``H x W x 3`` uint8, rounded to the nearest level."""
    return grid.detach().float().cpu().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def save_grid(images: Tensor, path: str | Path, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> Path:
    """Writes :func:`make_grid` of ``images`` to ``path`` (a PNG, or any suffix Pillow knows)."""
    path = Path(path)
    Image.fromarray(to_uint8(make_grid(images.detach(), nrow, padding, pad_value))).save(path)
    return path
