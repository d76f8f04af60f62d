"""Pixel-space checks: first and second moments, colour distribution, near-duplicates.

They catch what feature distances can miss (a global colour cast, a washed-out contrast) and
count collapsed chains directly. Images are float ``[N, C, H, W]`` in [0, 1], any size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from frame.eval.features import as_rgb01


def pixel_moments(samples: Tensor, reference: Tensor) -> dict[str, float]:
    """Mean over RGB channels of |mean difference| and |std difference| of the pixel values."""
    a, b = as_rgb01(samples), as_rgb01(reference)
    mean = (a.mean(dim=(0, 2, 3)) - b.mean(dim=(0, 2, 3))).abs().mean()
    std = (a.std(dim=(0, 2, 3)) - b.std(dim=(0, 2, 3))).abs().mean()
    return {"pixel_mean": float(mean), "pixel_std": float(std)}


def colour_histogram(images: Tensor, bins: int = 8) -> Tensor:
    """Joint RGB histogram with ``bins`` levels per channel, normalised to sum 1."""
    levels = (as_rgb01(images) * bins).long().clamp(max=bins - 1)
    index = (levels[:, 0] * bins + levels[:, 1]) * bins + levels[:, 2]
    counts = torch.bincount(index.flatten(), minlength=bins**3).double()
    return counts / counts.sum()


def colour_histogram_distance(samples: Tensor, reference: Tensor, bins: int = 8) -> float:
    """Total variation between the joint RGB histograms: 0 same colours, 1 disjoint colours."""
    return float(0.5 * (colour_histogram(samples, bins) - colour_histogram(reference, bins)).abs().sum())


def distinct_count(images: Tensor, threshold: float = 0.05) -> int:
    """Images left after greedily dropping any within ``threshold`` of a kept one.

    Distance = root mean square pixel difference in [0, 1] units (0.05 is about 13 grey
    levels); same-size images only. N distinct images give N; N copies of one image give 1.
    """
    flat = as_rgb01(images).flatten(1).double()
    distances = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    kept: list[int] = []
    for i in range(len(flat)):
        if all(distances[i, j] > threshold for j in kept):
            kept.append(i)
    return len(kept)
