"""A person as the two-sample classifier: a numbered sheet of samples and real images, shuffled, and its key.

The classifier of :mod:`frame.eval.c2st` learns from scratch, from the few dozen images a run
has, what tells samples from real images; a person brings a lifetime of faces and scenes to
the same question, and sees at a glance what a small net cannot learn from 50 images (a
doubled mouth, a smeared eye). This is the classifier two-sample test with a person as the
classifier (Lopez-Paz and Oquab 2017; the human variant of Zhou et al. 2019, "HYPE: a
benchmark for Human eYe Perceptual Evaluation of generative models"): ``n`` samples and ``n``
real images drawn at random, shuffled into one sheet of numbered tiles, shown large; the person
names the tiles they take for samples, and :func:`score` reads the answer against the key as
:func:`frame.eval.c2st.c2st` reads a net's: accuracy over the ``2 n`` tiles (0.5 = the
person cannot tell them apart), its Wilson 95% interval and the one-sided binomial p-value of "better than
chance". The key is kept apart from the sheet (a file the person does not open before answering).

A key read back is checked before use (a file from outside may be crafted): its tiles must be
``2 n`` booleans, ``n`` of them true, and an answer must name distinct tiles of the sheet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw
from scipy import stats
from torch import Tensor

from frame.eval.c2st import wilson_interval
from frame.grids import cell_origin, make_grid, to_uint8

#: tiles are enlarged by whole factors to at least this side (nearest neighbour: no new detail)
TILE_SIDE = 96
LABEL_HEIGHT = 14
COLUMNS = 8


@dataclass(frozen=True)
class BlindResult:
    """A person's answer read against the key."""

    accuracy: float
    accuracy_interval: tuple[float, float]
    p_value: float  # one-sided binomial test of accuracy > 1/2 over the sheet's tiles
    n_tiles: int
    samples_found: int  # samples called samples
    real_kept: int  # real images not called samples


def shuffle(samples: Tensor, real: Tensor, n: int, seed: int = 0) -> tuple[Tensor, list[bool]]:
    """``n`` random samples and ``n`` random real images (``[N, C, H, W]`` in [0, 1], one size), shuffled;
    the tiles and, per tile, whether it is a sample."""
    if samples.shape[1:] != real.shape[1:]:
        raise ValueError(f"blind test: samples {tuple(samples.shape[1:])} and real images {tuple(real.shape[1:])} differ in size")
    if not 1 <= n <= min(len(samples), len(real)):
        raise ValueError(f"blind test: n must be between 1 and {min(len(samples), len(real))} (the smaller set), got {n}")
    generator = torch.Generator().manual_seed(seed)
    picked = torch.cat([samples[torch.randperm(len(samples), generator=generator)[:n]],
                        real[torch.randperm(len(real), generator=generator)[:n]]])
    order = torch.randperm(2 * n, generator=generator)
    return picked[order], (order < n).tolist()


def sheet(tiles: Tensor) -> Image.Image:
    """The tiles enlarged (nearest neighbour) to at least :data:`TILE_SIDE`, ``COLUMNS`` a row, each numbered from 1 above it."""
    side = max(tiles.shape[-2:])
    factor = max(1, math.ceil(TILE_SIDE / side))
    big = tiles.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
    grid = make_grid(big.clamp(0, 1), nrow=COLUMNS, padding=LABEL_HEIGHT, pad_value=1.0)
    image = Image.fromarray(to_uint8(grid))
    draw = ImageDraw.Draw(image)
    for index in range(len(tiles)):
        top, left = cell_origin(index, len(tiles), tuple(big.shape[-2:]), COLUMNS, LABEL_HEIGHT)
        draw.text((left, top - LABEL_HEIGHT + 1), str(index + 1), fill=(0, 0, 0))
    return image


def check_key(key: object, where: str) -> list[bool]:
    """The key's tiles (True: a sample), refused in one line naming ``where`` unless ``2 n`` booleans, ``n`` true."""
    tiles = key.get("is_sample") if isinstance(key, dict) else None
    if not isinstance(tiles, list) or not tiles or not all(isinstance(tile, bool) for tile in tiles):
        raise ValueError(f"{where}: not a blind-test key (is_sample must be a list of true/false, one per tile)")
    if len(tiles) % 2 or sum(tiles) != len(tiles) // 2:
        raise ValueError(f"{where}: not a blind-test key ({sum(tiles)} of {len(tiles)} tiles are samples, not half)")
    return tiles


def score(is_sample: list[bool], called_samples: list[int]) -> BlindResult:
    """Reads an answer (the tiles, numbered from 1, the person calls samples) against the key's tiles."""
    n_tiles = len(is_sample)
    bad = [tile for tile in called_samples if not 1 <= tile <= n_tiles]
    if bad:
        raise ValueError(f"answer: tiles are numbered 1 to {n_tiles}, got {bad}")
    if len(set(called_samples)) != len(called_samples):
        raise ValueError(f"answer: a tile named twice in {sorted(called_samples)}")
    called = set(called_samples)
    samples_found = sum(1 for tile, sample in enumerate(is_sample, 1) if sample and tile in called)
    real_kept = sum(1 for tile, sample in enumerate(is_sample, 1) if not sample and tile not in called)
    correct = samples_found + real_kept
    return BlindResult(
        accuracy=correct / n_tiles,
        accuracy_interval=wilson_interval(correct, n_tiles),
        p_value=float(stats.binomtest(correct, n_tiles, 0.5, alternative="greater").pvalue),
        n_tiles=n_tiles,
        samples_found=samples_found,
        real_kept=real_kept,
    )
