"""Copies: is a sample closer to one training image than real images ever are to one another?

A model that memorises its training images makes samples that every distribution metric,
and the two-sample classifier, calls perfect (they are real images). This module catches it
in pixels:

- :func:`nearest_distances`: each image's root mean square pixel distance to its nearest
  training image (optionally leaving the image itself out, when it is one of them);
- :func:`copy_scores`: that distance for each sample over the median of the same distance for
  real images the model did not see (:func:`held_out_distances`: the training images
  themselves, each left out of its own search). 1 is what a new real image scores; a copy
  scores 0;
- a *near-copy* is a sample whose ratio is below ``COPY_THRESHOLD`` = 0.5: half the distance
  at which a real face typically finds its nearest other face. Of the 100 aligned LFW faces,
  none has its nearest other face that close (their leave-one-out ratios start at about
  0.7), while a training image with a visible artefact on it (a grid of a few grey levels,
  8-bit rounding) stays far below it.

Images are float ``[N, C, H, W]`` in [0, 1] of one size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from frame.eval.features import as_rgb01

#: ratio below which a sample is a near-copy of its nearest training image
COPY_THRESHOLD = 0.5


def nearest_distances(images: Tensor, training: Tensor, leave_one_out: bool = False) -> Tensor:
    """``[N]``: RMS pixel distance of each image to its nearest training image.

    ``leave_one_out``: ``images`` are the training images themselves (same order); each
    one's own entry is skipped.
    """
    a, b = as_rgb01(images).flatten(1).double(), as_rgb01(training).flatten(1).double()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"copies: both sets must have one image size, got {tuple(images.shape[1:])} and {tuple(training.shape[1:])}")
    distances = torch.cdist(a, b) / a.shape[1] ** 0.5
    if leave_one_out:
        if len(a) != len(b):
            raise ValueError("copies: leave_one_out needs the training images themselves")
        distances.fill_diagonal_(float("inf"))
    return distances.min(dim=1).values


def copy_scores(distances: Tensor, typical: float, threshold: float = COPY_THRESHOLD) -> dict[str, float]:
    """From nearest-training distances: ``copies``, the fraction of near-copies (ratio below
    ``threshold``), and ``copy_ratio``, the median ratio to ``typical``, the median
    nearest-training distance of real images the model did not see (1: like a new real image)."""
    ratios = distances / max(typical, 1e-12)
    return {"copies": float((ratios < threshold).double().mean()), "copy_ratio": float(ratios.quantile(0.5))}


def held_out_distances(training: Tensor) -> Tensor:
    """Each training image's distance to its nearest other one: the stand-in for real images the model did not see."""
    return nearest_distances(training, training, leave_one_out=True)
