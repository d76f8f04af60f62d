"""Classifier two-sample test (C2ST): can a small convnet, trained from scratch on pixels, tell two image sets apart?

Lopez-Paz and Oquab (2017), "Revisiting classifier two-sample tests": train a binary
classifier to tell set A (e.g. samples) from set B (real images) and read its accuracy on
images it was not trained on. Under H0 (the two sets come from one distribution) the held-out
accuracy over ``n_te`` test images is about N(1/2, 1/(4 n_te)); a classifier that finds any
difference, of any kind a convnet can see (a fine grid, seams between patches, smeared
features, the wrong contrast), pushes it towards 1. Unlike the VGG-16 feature distances, the
classifier has no fixed features a model could have been trained to match.

How it is run here, for the ~30-500 images per side the paper's experiments cover:

- the two sets are balanced (the larger is subsampled at random), so chance is 1/2;
- stratified k-fold cross-validation (``folds``, default 5): every image is tested once, by
  a net that never saw it, so all 2 n images count in ``n_te`` (the paper holds out half;
  k-fold spends the same images on training and testing without overlap);
- the net is small (three strided convolutions, about 24k weights; images above 64 px are
  downscaled to it; with ``min_side``, smaller ones are upsampled, bilinearly, to it: objects
  below 64 px, whose every pixel its first strided layer then sees in several positions, a
  stronger judge of small images than the net at their own size) and trained for a fixed
  number of epochs of Adam, with random horizontal flips and, when ``crop`` is given
  (textures), random crops of that fraction of the side (tested on the central crop) as
  augmentation;
- the result: held-out accuracy with its Wilson 95% interval, the one-sided binomial p-value
  of "accuracy > 1/2", the ROC AUC of the held-out probabilities (sklearn) with the
  Hanley-McNeil (1982) 95% interval, and the held-out information in bits,
  ``1 - cross-entropy / ln 2``.

Accuracy and AUC saturate: once the classifier calls every test image right, a set it tells
apart at a glance and one it had to learn to tell apart both read 1. The information keeps
reading how sure it is: with balanced sets, ``ln 2`` minus any classifier's expected
cross-entropy is at most the Jensen-Shannon divergence of the two distributions (equal for the
ideal classifier), so ``1 - cross-entropy / ln 2`` estimates a lower bound on it in bits: 0 at
chance, 1 only when every test image is called with certainty. It breaks ties at the top;
near chance it goes negative (a net that learnt its training images by heart is sure and wrong
on new ones), so there read the accuracy and its interval.

Deterministic given ``seed``: the folds, the net's initial weights, the batches and the flips
come from seeded generators (the global random state is untouched), and the nets train on
one torch thread (on busy cores the hand-offs between threads of such small convolutions cost
more than the maths), so the result repeats to the bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from torch import Tensor, nn

from frame.eval.features import as_rgb01

#: images larger than this (shorter side) are downscaled (area) before the classifier
MAX_SIDE = 64


@dataclass(frozen=True)
class C2STResult:
    """Held-out accuracy and AUC of the classifier, each with a 95% interval, and its held-out information."""

    accuracy: float
    accuracy_interval: tuple[float, float]
    auc: float
    auc_interval: tuple[float, float]
    p_value: float  # one-sided binomial test of accuracy > 1/2 over n_test predictions
    information: float  # 1 - held-out cross-entropy / ln 2, in bits: 0 chance, 1 certain and right
    n_per_side: int
    n_test: int


def classifier(channels: int = 3, width: int = 16) -> nn.Sequential:
    """A 4x4 convolution of stride 2 (it sees every pixel), three strided 3x3 convolutions, global average and max pooling, one logit."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        GlobalPool(),
        nn.Linear(8 * width, 1),
    )


class GlobalPool(nn.Module):
    """``[N, C, h, w]`` -> ``[N, 2C]``: spatial mean and max (a stationary artefact and a local one)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    interval = stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def auc_interval(auc: float, n_pos: int, n_neg: int, confidence: float = 0.95) -> tuple[float, float]:
    """Hanley and McNeil (1982)'s normal interval of an ROC AUC, clipped to [0, 1]."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    half = stats.norm.ppf(0.5 + confidence / 2) * math.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def _prepared(images: Tensor, min_side: int | None = None) -> Tensor:
    images = as_rgb01(images).cpu()
    side = min(images.shape[-2:])
    if side > MAX_SIDE:
        size = [round(s * MAX_SIDE / side) for s in images.shape[-2:]]
        images = nn.functional.interpolate(images, size=size, mode="area")
    elif min_side is not None and side < min_side:
        size = [round(s * min_side / side) for s in images.shape[-2:]]
        images = nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return (images - 0.5) * 4  # about unit variance; brightness and contrast stay visible


def _augment(x: Tensor, crop: int | None, generator: torch.Generator) -> Tensor:
    """Random horizontal flips, one per image; with ``crop``, one random crop of that side for the batch."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if crop is None:
        return x
    h, w = x.shape[-2:]
    top = torch.randint(h - crop + 1, (1,), generator=generator).item()
    left = torch.randint(w - crop + 1, (1,), generator=generator).item()
    return x[..., top : top + crop, left : left + crop]


def _centre(x: Tensor, crop: int | None) -> Tensor:
    if crop is None:
        return x
    h, w = x.shape[-2:]
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[..., top : top + crop, left : left + crop]


def _fit_predict(train_x: Tensor, train_y: Tensor, test_x: Tensor, epochs: int, batch_size: int, lr: float,
                 crop: int | None, seed: int) -> Tensor:
    """Trains a fresh classifier on (train_x, train_y); the test images' logits of label 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = classifier(train_x.shape[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            logits = net(_augment(train_x[batch], crop, generator)).squeeze(1)
            loss = loss_fn(logits, train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        test_x = _centre(test_x, crop)
        # the two mirror images of each test image, averaged: the flips it was trained with
        return (net(test_x).squeeze(1) + net(test_x.flip(-1)).squeeze(1)) / 2


def c2st(
    a: Tensor,
    b: Tensor,
    folds: int = 5,
    epochs: int = 30,
    batch_size: int = 16,
    lr: float = 3e-3,
    crop: float | None = None,
    seed: int = 0,
    min_side: int | None = None,
) -> C2STResult:
    """Held-out accuracy of a convnet telling ``a`` (label 1) from ``b`` (label 0); 1/2 = it cannot tell them apart.

    Args:
        a, b: image sets ``[N, 1 or 3, H, W]`` in [0, 1] of one size (the larger set is
            subsampled to the smaller's size; each needs at least ``folds`` images).
        folds: stratified cross-validation folds; every image is predicted once.
        epochs: passes over each fold's training images.
        batch_size, lr: Adam's mini-batches and step size.
        crop: textures: train on random crops of this fraction of the (downscaled) side,
            test on the central one.
        seed: the subsampling, folds, initial weights, batches and flips.
        min_side: images whose shorter side is below it are upsampled (bilinear) to it, both
            sets alike (at most ``MAX_SIDE``).
    """
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"c2st: both sets must have one image size, got {tuple(a.shape[1:])} and {tuple(b.shape[1:])}")
    n = min(len(a), len(b))
    if n < folds:
        raise ValueError(f"c2st: need at least {folds} images per side (folds={folds}), got {len(a)} and {len(b)}")
    generator = torch.Generator().manual_seed(seed)
    a = a[torch.randperm(len(a), generator=generator)[:n]]
    b = b[torch.randperm(len(b), generator=generator)[:n]]
    if min_side is not None and not 0 < min_side <= MAX_SIDE:
        raise ValueError(f"c2st: min_side must be in (0, {MAX_SIDE}], got {min_side}")
    x = _prepared(torch.cat([a, b]), min_side)
    if crop is not None and not 0 < crop <= 1:
        raise ValueError(f"c2st: crop is a fraction of the side in (0, 1], got {crop}")
    side = None if crop is None else max(8, round(crop * min(x.shape[-2:])))
    y = torch.cat([torch.ones(n), torch.zeros(n)])
    logits = torch.empty(2 * n)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for fold, (train, test) in enumerate(splitter.split(np.zeros(2 * n), y.numpy())):
            train, test = torch.from_numpy(train), torch.from_numpy(test)
            logits[test] = _fit_predict(x[train], y[train], x[test], epochs, batch_size, lr, side, seed * 100 + fold)
    finally:
        torch.set_num_threads(threads)
    probabilities = torch.sigmoid(logits)
    correct = int(((probabilities > 0.5).float() == y).sum())
    auc = float(roc_auc_score(y.numpy(), probabilities.numpy()))
    cross_entropy = float(nn.functional.binary_cross_entropy_with_logits(logits.double(), y.double()))
    return C2STResult(
        accuracy=correct / (2 * n),
        accuracy_interval=wilson_interval(correct, 2 * n),
        auc=auc,
        auc_interval=auc_interval(auc, n, n),
        p_value=float(stats.binomtest(correct, 2 * n, 0.5, alternative="greater").pvalue),
        information=1 - cross_entropy / math.log(2),
        n_per_side=n,
        n_test=2 * n,
    )
