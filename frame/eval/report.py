"""Every metric next to its floor and its ceiling, so a reader sees where a number sits.

``evaluate(samples, reference, kind)`` scores generated images against real ones and returns
one :class:`Score` per metric: ``value`` (the samples), ``floor`` (what real images score:
the same metric between two disjoint sets of real images, or two crop sets of the exemplar)
and ``ceiling`` (what a failed sampler scores: white noise, or the images you pass as
``ceiling``, e.g. the chains' initial images; for ``distinct``, whose failure is collapse,
one image repeated). ``position`` = (value - floor) / (ceiling - floor): 0 reads "as good as
real images", 1 "as bad as noise".

``kind="objects"`` (aligned object images, one reference set): the reference is split at
random into halves A and B; samples, A (floor) and the ceiling set, each cut to the same
number of images n, are all compared with B, so the three numbers share their small-sample
bias. Metrics: KID (with its subset std), Fréchet distance, precision, recall, density,
coverage on pooled VGG-16 features (``frame.eval.distribution``); distinct samples, pixel
moments and colour histogram distance (``frame.eval.pixels``). The features of every set are
divided by one number, the root mean square of B's features: Caffe VGG-16 responses run in
the tens, where KID's cubic kernel ``(x.y / D + 1)^3`` would be ruled by the largest ones; so
scaled, ``x.y / D`` is about 1 as with Inception features. Precision, recall, density and
coverage do not change; the Fréchet distance is divided by the square of that number.

``kind="texture"`` (stationary models, one or several exemplars): samples of any canvas size,
two independent random crop sets A and B of the exemplar(s) and the ceiling set are cut into
``n_crops`` crops of one size and compared with B. Metrics: Gram distance and sliced
Wasserstein distance over conv1_1..conv5_1 (``frame.eval.texture``), the Portilla-Simoncelli
distance ``ps`` on the central square of the first ``PS_CROPS`` crops that the steerable
pyramid can halve (``frame.eval.portilla``, no VGG), pixel moments, colour histogram distance.

The feature metrics are **VGG-16 feature distances, not Inception FID: not comparable with
published FIDs** (``format_table`` prints this line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from frame.eval.distribution import frechet_distance, kid, prdc
from frame.eval.features import VGGFeatures, as_rgb01
from frame.eval.pixels import colour_histogram_distance, distinct_count, pixel_moments
from frame.eval.portilla import PSReference, ps_distance, ps_geometry, ps_reference
from frame.eval.texture import TextureReference, gram_distance, random_crops, sliced_wasserstein, texture_reference

NOT_FID = "VGG-16 feature distances, not Inception FID: not comparable with published FIDs"
KINDS = ("objects", "texture")
#: metrics where larger is better; every other one is a distance
HIGHER_IS_BETTER = frozenset({"precision", "recall", "density", "coverage", "distinct"})
OBJECT_METRICS = ("kid", "fd", "precision", "recall", "density", "coverage", "distinct", "pixel_mean", "pixel_std", "colour_hist")
TEXTURE_METRICS = ("gram_rel", "swd_rel", "ps", "pixel_mean", "pixel_std", "colour_hist")
PS_CROPS = 32  # crops per set for the Portilla-Simoncelli distance (its cost grows with their number and area)


@dataclass(frozen=True)
class Score:
    """One metric: the samples' value, the real-vs-real floor, the failed-sampler ceiling."""

    value: float
    floor: float
    ceiling: float
    std: float | None = None

    @property
    def position(self) -> float:
        """0 at the floor, 1 at the ceiling (nan when they coincide)."""
        span = self.ceiling - self.floor
        return (self.value - self.floor) / span if span else math.nan


class Evaluator:
    """Scores image sets against one reference; the floor and ceiling are computed once.

    Args:
        reference: real images ``[N, C, H, W]`` in [0, 1] (objects: at least 12; texture: the
            exemplar(s)).
        kind: ``objects`` or ``texture``.
        features: a :class:`VGGFeatures` (default: Caffe VGG-16 from ``source``/``cache_dir``).
        n: objects: images per compared set (default and maximum: half the reference).
        ceiling: images of a failed sampler (default: uniform white noise at the samples' size).
        crop_size: texture: crop side (default: half the exemplar's shorter side, at most the
            samples' shorter side, at least 16 for conv5_1).
        n_crops: texture: crops per compared set.
        distinct_threshold: RMS pixel distance under which two samples count as one.
        k: neighbours of precision/recall/density/coverage.
        seed: the split, crops, noise and KID subsets.
    """

    def __init__(
        self,
        reference: Tensor,
        kind: str = "objects",
        features: VGGFeatures | None = None,
        n: int | None = None,
        ceiling: Tensor | None = None,
        crop_size: int | None = None,
        n_crops: int = 64,
        distinct_threshold: float = 0.05,
        k: int = 5,
        seed: int = 0,
        source: str = "caffe",
        cache_dir: str | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.reference = as_rgb01(reference).cpu()
        self.features = features or VGGFeatures(source=source, cache_dir=cache_dir)
        self.ceiling = None if ceiling is None else as_rgb01(ceiling).cpu()
        self.crop_size = crop_size
        self.n_crops = int(n_crops)
        self.distinct_threshold = float(distinct_threshold)
        self.k = int(k)
        self.seed = int(seed)
        generator = torch.Generator().manual_seed(self.seed)
        if kind == "objects":
            if len(self.reference) < 2 * (self.k + 1):
                raise ValueError(f"objects: need at least {2 * (self.k + 1)} reference images, got {len(self.reference)}")
            order = torch.randperm(len(self.reference), generator=generator)
            half = len(self.reference) // 2
            self.n = min(n or half, half)
            self.half_a, self.half_b = self.reference[order[:half]], self.reference[order[half:]]
            raw_b = self.features(self.half_b)
            # one number for every set: the kernel's x.y / D is then about 1, as with Inception features
            self.feature_scale = float(raw_b.pow(2).mean().sqrt().clamp_min(1e-12))
            self._features_b = raw_b / self.feature_scale
        self._calibration: tuple[dict[str, float], dict[str, float]] | None = None
        self._crops_b: Tensor | None = None
        self._texture_b: TextureReference | None = None
        self._ps_b: PSReference | None = None

    # ------------------------------------------------------------------ the sets compared

    def _generator(self, salt: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1000 + salt)

    def _subset(self, images: Tensor, salt: int) -> Tensor:
        if len(images) < self.n:
            raise ValueError(f"objects: need at least n={self.n} samples, got {len(images)} (pass n= or more samples)")
        return images[torch.randperm(len(images), generator=self._generator(salt))[: self.n]]

    def _prepare_texture(self, samples: Tensor) -> None:
        """Fixes the crop size (from the first samples seen) and the reference crops B."""
        if self._texture_b is not None:
            return
        if self.crop_size is None:
            self.crop_size = max(16, min(min(self.reference.shape[-2:]) // 2, min(samples.shape[-2:])))
        self._crops_b = self._crops(self.reference, 2)
        self._ps_b = ps_reference(self._ps_crops(self._crops_b))
        self._texture_b = texture_reference(self.features.maps(self._crops_b), seed=self.seed)

    def _ps_crops(self, crops: Tensor) -> Tensor:
        """The central square of the first ``PS_CROPS`` crops, at the side the pyramid allows (at most 128 px)."""
        side, _ = ps_geometry(self.crop_size, 2 * self.crop_size)
        top = (self.crop_size - side) // 2
        return crops[:PS_CROPS, :, top : top + side, top : top + side]

    def _crops(self, images: Tensor, salt: int) -> Tensor:
        return random_crops(images, self.crop_size, self.n_crops, self._generator(salt))

    def _noise(self, like: Tensor) -> Tensor:
        return torch.rand(like.shape, generator=self._generator(7))

    # ------------------------------------------------------------------ raw metrics of one set

    def _objects(self, images: Tensor) -> dict[str, float]:
        real = self._features_b
        fake = self.features(images) / self.feature_scale
        kid_mean, kid_std = kid(real, fake, seed=self.seed)
        values = {"kid": kid_mean, "kid_std": kid_std, "fd": frechet_distance(real, fake)}
        values.update(prdc(real, fake, self.k))
        values["distinct"] = float(distinct_count(images, self.distinct_threshold))
        values.update(pixel_moments(images, self.half_b))
        values["colour_hist"] = colour_histogram_distance(images, self.half_b)
        return values

    def _texture(self, crops: Tensor) -> dict[str, float]:
        maps = self.features.maps(crops)
        values = {"gram_rel": gram_distance(maps, self._texture_b), "swd_rel": sliced_wasserstein(maps, self._texture_b)}
        values["ps"] = ps_distance(self._ps_crops(crops), self._ps_b)
        values.update(pixel_moments(crops, self._crops_b))
        values["colour_hist"] = colour_histogram_distance(crops, self._crops_b)
        return values

    def raw(self, samples: Tensor) -> dict[str, float]:
        """The samples' metrics alone (no calibration): ``kid``, ``kid_std``, ``fd``, ... or ``gram_rel``, ..."""
        samples = as_rgb01(samples).cpu()
        if self.kind == "objects":
            return self._objects(self._subset(samples, 1))
        self._prepare_texture(samples)
        return self._texture(self._crops(samples, 3))

    def calibration(self, like: Tensor) -> tuple[dict[str, float], dict[str, float]]:
        """(floor, ceiling) raw metrics, computed once (``like``: samples, for sizes)."""
        if self._calibration is None:
            like = as_rgb01(like).cpu()
            if self.kind == "objects":
                floor = self._objects(self._subset(self.half_a, 4))
                bad = self.ceiling if self.ceiling is not None else self._noise(self.half_a)
                ceiling = self._objects(self._subset(bad, 5))
                ceiling["distinct"] = 1.0  # the failure distinct counts is collapse: one image repeated
            else:
                self._prepare_texture(like)
                floor = self._texture(self._crops(self.reference, 4))
                bad = self.ceiling if self.ceiling is not None else self._noise(like)
                ceiling = self._texture(self._crops(bad, 5))
            self._calibration = (floor, ceiling)
        return self._calibration

    def __call__(self, samples: Tensor) -> dict[str, Score]:
        """One :class:`Score` per metric of the kind (``OBJECT_METRICS`` or ``TEXTURE_METRICS``)."""
        floor, ceiling = self.calibration(samples)
        values = self.raw(samples)
        names = OBJECT_METRICS if self.kind == "objects" else TEXTURE_METRICS
        return {
            name: Score(values[name], floor[name], ceiling[name], values.get(f"{name}_std"))
            for name in names
        }

    def setup(self) -> str:
        """One line saying what was compared with what."""
        ceiling = "the given images" if self.ceiling is not None else "white noise"
        if self.kind == "objects":
            taps = "+".join(self.features.layers)
            return (
                f"objects: {self.n} samples vs {len(self.half_b)} held-out real images; floor: {self.n} other real "
                f"images; ceiling: {ceiling}; features: global-average-pooled {taps} (images below "
                f"{self.features.min_size} px upsampled to it)"
            )
        return (
            f"texture: {self.n_crops} crops of {self.crop_size} px from the samples vs {self.n_crops} crops of the "
            f"exemplar; floor: {self.n_crops} other exemplar crops; ceiling: {ceiling}; taps: "
            f"{', '.join(self.features.texture_layers)}"
        )


def evaluate(samples: Tensor, reference: Tensor, kind: str = "objects", **options) -> dict[str, Score]:
    """Scores ``samples`` against ``reference`` (see :class:`Evaluator` for ``options``).

    objects: ``n`` defaults to the smaller of the samples and half the reference.
    """
    if kind == "objects":
        options.setdefault("n", min(len(samples), len(reference) // 2))
    return Evaluator(reference, kind, **options)(samples)


def _number(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def format_table(results: dict[str, Score], setup: str | None = None) -> str:
    """A plain-text table: metric, value (+- std), floor, ceiling, position, which way is better."""
    lines = [NOT_FID]
    if setup:
        lines.append(setup)
    header = ("metric", "value", "floor (real)", "ceiling", "position", "better")
    rows = [header]
    for name, score in results.items():
        value = _number(score.value) + (f" +- {score.std:.2g}" if score.std is not None else "")
        rows.append((
            name, value, _number(score.floor), _number(score.ceiling), f"{score.position:.2f}",
            "higher" if name in HIGHER_IS_BETTER else "lower",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.append("position: 0 = as good as real images (floor), 1 = as bad as the ceiling")
    return "\n".join(lines)
