"""Texture quality for stationary models: feature statistics the model does not match.

A stationary FRAME model matches the spatial means of its filter responses (eq. 14). These
metrics judge samples on second-order and whole-distribution statistics of other taps, the
VGG-16 conv1_1..conv5_1 responses (``frame.eval.features.TEXTURE_LAYERS``):

- :func:`gram_distance`: the Gatys et al. (2015) texture loss made relative, per tap
  ``||G(sample) - G(reference)||_F / ||G(reference)||_F`` with ``G = F F^T / positions``
  (uncentred, as Gatys), averaged over taps and samples.
- :func:`sliced_wasserstein`: the sliced Wasserstein distance between the distributions of
  feature vectors over positions (Heitz et al. 2021, "A sliced Wasserstein loss for neural
  texture synthesis"), which sees every marginal along random directions, not only two
  moments; relative to the spread of the reference along each direction.

Both compare equal-size crops (:func:`random_crops`), so a sample canvas of any size is
judged at the scale of the exemplar crops, and one crop's statistics vary as much in the
samples as in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def random_crops(images: Tensor, size: int, n: int, generator: torch.Generator) -> Tensor:
    """``n`` random ``size`` x ``size`` crops, each from a random image of ``images``."""
    _, _, h, w = images.shape
    if size > min(h, w):
        raise ValueError(f"crop size {size} exceeds the images' {h}x{w}")
    which = torch.randint(len(images), (n,), generator=generator).tolist()
    top = torch.randint(h - size + 1, (n,), generator=generator).tolist()
    left = torch.randint(w - size + 1, (n,), generator=generator).tolist()
    return torch.stack([images[i, :, y : y + size, x : x + size] for i, y, x in zip(which, top, left)])


def gram(maps: Tensor) -> Tensor:
    """``[N, C, h, w]`` -> ``[N, C, C]``, F F^T over positions divided by their number (float64)."""
    flat = maps.flatten(2).float()
    return (flat @ flat.transpose(1, 2)).double() / flat.shape[2]


@dataclass(frozen=True)
class TextureReference:
    """The reference side of both distances, per tap, computed once by :func:`texture_reference`."""

    grams: dict[str, Tensor]  # mean Gram matrix [C, C]
    directions: dict[str, Tensor]  # unit directions [D, C]
    projections: dict[str, Tensor]  # every reference vector projected, sorted [D, positions]
    spreads: dict[str, Tensor]  # mean variance of the projections


def texture_reference(maps: dict[str, Tensor], n_directions: int = 64, seed: int = 0) -> TextureReference:
    """Summarises reference feature maps {tap: [N, C, h, w]} for the two distances."""
    generator = torch.Generator().manual_seed(seed)
    grams, directions, projections, spreads = {}, {}, {}, {}
    for name, ref in maps.items():
        grams[name] = gram(ref).mean(0)
        d = torch.randn(n_directions, ref.shape[1], generator=generator)
        directions[name] = (d / d.norm(dim=1, keepdim=True)).to(ref.device)
        projected = directions[name] @ ref.float().transpose(0, 1).flatten(1)  # [D, all positions]
        projections[name] = projected.sort(dim=1).values
        spreads[name] = projected.double().var(dim=1).mean()
    return TextureReference(grams, directions, projections, spreads)


def gram_distance(samples: dict[str, Tensor], reference: TextureReference) -> float:
    """Mean over taps and samples of ||G(sample) - mean G(reference)||_F / ||mean G(reference)||_F."""
    per_tap = []
    for name, maps in samples.items():
        target = reference.grams[name]
        per_tap.append(torch.linalg.matrix_norm(gram(maps) - target).mean() / torch.linalg.matrix_norm(target))
    return float(torch.stack(per_tap).mean())


def _quantiles(sorted_values: Tensor, n: int) -> Tensor:
    """``n`` evenly spaced quantiles along the last dim of ``sorted_values`` (nearest rank)."""
    m = sorted_values.shape[-1]
    index = ((torch.arange(n, dtype=torch.float64) + 0.5) * m / n).long().clamp(max=m - 1)
    return sorted_values[..., index.to(sorted_values.device)]


def sliced_wasserstein(samples: dict[str, Tensor], reference: TextureReference) -> float:
    """Mean over taps and samples of the relative sliced 2-Wasserstein distance.

    Per tap: a sample's vectors (one per position) are projected on the reference's random
    unit directions and sorted; the reference's sorted projections are read at the sample's
    quantiles; ``sqrt(mean squared difference / mean variance of the reference projections)``.
    0 = same distribution; unrelated distributions give about 1 or more.
    """
    per_tap = []
    for name, maps in samples.items():
        target = _quantiles(reference.projections[name], maps.shape[2] * maps.shape[3])  # [D, positions]
        projected = (reference.directions[name] @ maps.float().flatten(2)).sort(dim=2).values  # [N, D, positions]
        squared = (projected - target).double().pow(2).mean(dim=(1, 2))  # [N]
        per_tap.append((squared / reference.spreads[name]).sqrt().mean())
    return float(torch.stack(per_tap).mean())
