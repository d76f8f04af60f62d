"""Texture statistics from outside VGG: the Portilla-Simoncelli distance to an exemplar.

A stationary FRAME model matches the spatial means of its own filter responses (eq. 14), and
the VGG metrics of :mod:`frame.eval.texture` read the same network. The Portilla & Simoncelli
(2000) statistics come from a complex steerable pyramid instead: pixel moments, the
auto-correlations of the band magnitudes and of the lowpass images at every scale, skew and
kurtosis across scales, cross-orientation and cross-scale correlations, the highpass
residual's variance (``plenoptic.models.PortillaSimoncelli``, the non-redundant statistics).
Two textures with the same statistics look like the same texture to a person, so a sample
that is far from the exemplar here is wrong in a way the model's own features may not see.

The distance (:func:`ps_distance`): every crop gives one statistics vector. The exemplar's
crops fix, per statistic, a mean, and per group of statistics (one group per key of
``PortillaSimoncelli.convert_to_dict``, per channel) a spread, the root mean crop-to-crop
variance of the group's statistics. One crop's distance is
``sqrt(mean over groups of mean over the group's statistics of ((x - mean) / spread)^2)``,
and a set's score is the mean over its crops of the natural log of that distance: the
distances run from about 1 (the exemplar's own crops) to hundreds (noise), and on the log
scale another texture or a blurred one sits visibly between the floor and the ceiling instead
of at a position of a few hundredths (log 2 = 0.69: twice as far as the exemplar's own
crops). Dividing by the group's spread puts every
group in the exemplar's own units, so that no group rules by its count or its scale (the
magnitude auto-correlations are hundreds of numbers, the highpass variance one), while
within a group the statistics that vary more from crop to crop weigh more, as they should;
one spread per statistic instead would let near-constant statistics dominate. A group whose
statistics hardly vary over the exemplar (the channel correlations of a tinted grey texture
are all 1) is held to 1% of its statistics' root mean square, not to zero. A flat crop's
undefined correlations, skew and kurtosis are taken as 0 (a collapsed sampler gets a large
finite distance, not NaN). The pixel minimum and maximum are left out, as plenoptic's own
synthesis loss leaves them out: one pixel decides them.

Floor and ceiling (:func:`ps_score`): other crops of the exemplar score about 0 (one crop
differs from the exemplar's mean by about one spread per statistic); white noise, or the images
given as the ceiling, score what a failed sampler scores.

Grey and colour: a grey exemplar (one channel, or three equal ones) is judged on luminance,
the mean of the channels (a grey model's samples are grey; their colour is not judged). A
colour exemplar is judged per channel in an opponent basis (luminance, red-green,
yellow-blue: nearly decorrelated, so the three channels' statistics are not three copies of
the luminance's as RGB's would be), plus one group of cross-channel correlations (the three
channel pairs at each pyramid scale), as Portilla & Simoncelli extend their model to colour.

The pyramid needs a crop side divisible by ``2**n_scales`` whose coarsest band keeps at least
8 pixels for the 7 x 7 auto-correlations: :func:`ps_geometry` picks the crop side and the
number of scales (64 px: 3 scales, 128 and 224 px: 4). The cost grows with the crop's area,
so crops are at most 128 px by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from frame.eval.features import as_rgb01
from frame.eval.texture import random_crops

try:
    from plenoptic.models import PortillaSimoncelli
except ImportError:  # the optional ``eval`` extra
    PortillaSimoncelli = None

MISSING = "the Portilla-Simoncelli texture distance needs the plenoptic package: pip install 'plenoptic>=2.1'"
MAX_SCALES = 4
MIN_COARSEST = 8  # pixels of the coarsest band, at least the 7 x 7 auto-correlation window
CORR_WIDTH = 7  # Portilla & Simoncelli's spatial neighbourhood
ORIENTATIONS = 4
MAX_CROP = 128
#: RGB -> luminance, red-green, yellow-blue (rows)
OPPONENT = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1 / 2, -1 / 2, 0.0], [1 / 4, 1 / 4, -1 / 2]])
GREY_TOLERANCE = 2 / 255  # channels this close everywhere count as one grey image (JPEG rounding)
DROPPED = ("pixel_min", "pixel_max")
RELATIVE_SPREAD = 0.01  # a group's spread is at least 1% of its statistics' root mean square


def ps_scales(side: int) -> int:
    """The most pyramid scales (at most 4) a ``side`` x ``side`` crop allows (0: too small)."""
    n = 0
    while n < MAX_SCALES and side % 2 ** (n + 1) == 0 and side // 2 ** (n + 1) >= MIN_COARSEST:
        n += 1
    return n


def ps_geometry(sample_side: int, exemplar_side: int, max_crop: int = MAX_CROP) -> tuple[int, int]:
    """(crop side, scales): up to the samples' shorter side, half the exemplar's (so that two
    crop sets differ) and ``max_crop``, the side with the most scales, then the largest."""
    limit = min(sample_side, exemplar_side // 2, max_crop)
    best = max(((ps_scales(side), side) for side in range(2, limit + 1)), default=(0, limit))
    if best[0] < 1:
        raise ValueError(
            f"Portilla-Simoncelli statistics need crops of at least {2 * MIN_COARSEST} px: samples of {sample_side} px "
            f"and an exemplar of {exemplar_side} px (crops at most half of it) allow {limit}"
        )
    return best[1], best[0]


def is_grey(images: Tensor) -> bool:
    """One channel, or three that agree everywhere within two grey levels (JPEG rounding)."""
    return images.shape[1] == 1 or bool((images - images[:, :1]).abs().amax() <= GREY_TOLERANCE)


@lru_cache(maxsize=8)
def _model(side: int, n_scales: int):
    if PortillaSimoncelli is None:
        raise ImportError(MISSING)
    return PortillaSimoncelli((side, side), n_scales=n_scales, n_orientations=ORIENTATIONS, spatial_corr_width=CORR_WIDTH)


@lru_cache(maxsize=8)
def _layout(side: int, n_scales: int) -> tuple[Tensor, tuple[str, ...]]:
    """(kept statistic indices, their group names) of the model's output vector."""
    model = _model(side, n_scales)
    with torch.no_grad():
        count = model(torch.zeros(1, 1, side, side)).shape[-1]
    positions = model.convert_to_dict(torch.arange(count, dtype=torch.float64)[None, None])  # each statistic's place
    names = [""] * count
    for key, where in positions.items():
        for position in where.flatten().tolist():
            if position == position:  # not the NaN of a redundant statistic
                names[int(position)] = key
    names[int(positions["pixel_statistics"][0, 0, 4])] = DROPPED[0]
    names[int(positions["pixel_statistics"][0, 0, 5])] = DROPPED[1]
    keep = [i for i, name in enumerate(names) if name not in DROPPED]
    return torch.tensor(keep), tuple(names[i] for i in keep)


def _cross_channel(channels: Tensor, n_scales: int) -> Tensor:
    """``[N, 3, h, w]`` -> ``[N, 3 * n_scales]``: the channel pairs' correlations, image halved per scale."""
    values = []
    for scale in range(n_scales):
        x = F.avg_pool2d(channels, 2**scale) if scale else channels
        x = x.flatten(2)
        x = x - x.mean(2, keepdim=True)
        x = x / x.pow(2).mean(2, keepdim=True).sqrt().clamp_min(1e-8)
        values += [(x[:, i] * x[:, j]).mean(1) for i, j in ((0, 1), (0, 2), (1, 2))]
    return torch.stack(values, 1)


@dataclass(frozen=True)
class PSStatistics:
    """Statistics vectors of crops: ``values`` ``[N, S]`` and the group of each statistic."""

    values: Tensor
    groups: tuple[str, ...]


def ps_statistics(crops: Tensor, colour: bool) -> PSStatistics:
    """Portilla-Simoncelli statistics of square crops ``[N, 1 or 3, s, s]`` in [0, 1].

    ``colour=False``: of the luminance; ``colour=True``: of each opponent channel, plus the
    cross-channel correlations (module docstring).
    """
    crops = as_rgb01(crops)
    side = crops.shape[-1]
    if crops.shape[-2] != side:
        raise ValueError(f"Portilla-Simoncelli crops must be square, got {tuple(crops.shape[-2:])}")
    n_scales = ps_scales(side)
    if n_scales < 1:
        raise ValueError(f"Portilla-Simoncelli crops of {side} px are too small: need a side divisible by 2 and at least {2 * MIN_COARSEST}")
    keep, names = _layout(side, n_scales)
    channels = torch.einsum("kc,nchw->nkhw", OPPONENT, crops) if colour else crops.mean(1, keepdim=True)
    with torch.no_grad():
        stats = _model(side, n_scales)(channels).index_select(-1, keep).double()  # [N, C, S]
    stats = stats.nan_to_num(0.0)  # a flat channel's correlations, skew and kurtosis: taken as 0
    if not colour:
        return PSStatistics(stats[:, 0], names)
    groups = tuple(f"{channel}/{name}" for channel in ("luminance", "red-green", "yellow-blue") for name in names)
    cross = _cross_channel(channels, n_scales).double()
    return PSStatistics(torch.cat([stats.flatten(1), cross], 1), groups + ("cross_channel_correlation",) * cross.shape[1])


@dataclass(frozen=True)
class PSReference:
    """The exemplar side of :func:`ps_distance`: per-statistic mean and per-group spread."""

    mean: Tensor  # [S]
    spread: Tensor  # [S], the spread of each statistic's group
    groups: Tensor  # [S], group number of each statistic
    side: int
    colour: bool


def ps_reference(exemplar_crops: Tensor, colour: bool | None = None) -> PSReference:
    """Summarises the exemplar's crops ``[N >= 2, C, s, s]`` (``colour`` defaults to not :func:`is_grey`)."""
    if len(exemplar_crops) < 2:
        raise ValueError("Portilla-Simoncelli reference: need at least 2 exemplar crops for their spread")
    colour = not is_grey(as_rgb01(exemplar_crops)) if colour is None else colour
    stats = ps_statistics(exemplar_crops, colour)
    names = list(dict.fromkeys(stats.groups))
    groups = torch.tensor([names.index(name) for name in stats.groups])
    mean, variance = stats.values.mean(0), stats.values.var(0)
    counts = torch.bincount(groups)
    group_variance = torch.zeros(len(names), dtype=variance.dtype).index_add_(0, groups, variance) / counts
    group_square = torch.zeros(len(names), dtype=variance.dtype).index_add_(0, groups, mean.pow(2)) / counts
    spread = (group_variance + RELATIVE_SPREAD**2 * group_square).sqrt().clamp_min(1e-6)
    return PSReference(mean, spread[groups], groups, exemplar_crops.shape[-1], colour)


def ps_crop_distances(crops: Tensor, reference: PSReference) -> Tensor:
    """``[N]``: each crop's distance to the exemplar, in the exemplar's crop-to-crop spreads."""
    if crops.shape[-1] != reference.side or crops.shape[-2] != reference.side:
        raise ValueError(f"Portilla-Simoncelli: crops of {tuple(crops.shape[-2:])} px against a reference of {reference.side} px crops")
    z2 = ((ps_statistics(crops, reference.colour).values - reference.mean) / reference.spread).pow(2)  # [N, S]
    n_groups = int(reference.groups.max()) + 1
    per_group = torch.zeros(len(z2), n_groups, dtype=z2.dtype).index_add_(1, reference.groups, z2) / torch.bincount(reference.groups)
    return per_group.mean(1).sqrt()


def ps_distance(samples: Tensor, exemplar_crops: Tensor | PSReference) -> float:
    """Mean log Portilla-Simoncelli distance of sample crops to the exemplar (about 0: as close
    as the exemplar's own crops). Both are square crops of one size ``[N, 1 or 3, s, s]`` in [0, 1]."""
    reference = exemplar_crops if isinstance(exemplar_crops, PSReference) else ps_reference(exemplar_crops)
    return float(ps_crop_distances(samples, reference).clamp_min(1e-6).log().mean())  # a crop equal to the mean: finite


class PSScore(NamedTuple):
    """value, floor, ceiling: ``frame.eval.report.Score(*ps_score(...))``."""

    value: float
    floor: float
    ceiling: float


def ps_score(
    samples: Tensor,
    exemplar: Tensor,
    n_crops: int = 32,
    ceiling: Tensor | None = None,
    crop_size: int | None = None,
    colour: bool | None = None,
    seed: int = 0,
) -> PSScore:
    """The samples' distance with its floor and ceiling, all on ``n_crops`` random crops.

    Reference: ``n_crops`` crops of the exemplar(s) ``[M, C, H, W]``; floor: ``n_crops`` other
    crops of the exemplar; ceiling: crops of ``ceiling`` (default: uniform white noise the
    samples' size). ``crop_size`` defaults to :func:`ps_geometry`'s choice; ``colour`` to
    the exemplar's (:func:`ps_reference`).
    """
    samples, exemplar = as_rgb01(samples), as_rgb01(exemplar)
    if crop_size is None:
        crop_size, _ = ps_geometry(min(samples.shape[-2:]), min(exemplar.shape[-2:]))
    generator = torch.Generator().manual_seed(seed)
    reference = ps_reference(random_crops(exemplar, crop_size, n_crops, generator), colour)
    floor = ps_distance(random_crops(exemplar, crop_size, n_crops, generator), reference)
    value = ps_distance(random_crops(samples, crop_size, n_crops, generator), reference)
    bad = torch.rand(samples.shape, generator=generator) if ceiling is None else as_rgb01(ceiling)
    return PSScore(value, floor, ps_distance(random_crops(bad, crop_size, n_crops, generator), reference))
