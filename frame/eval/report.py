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

Measures outside VGG-16, in pixels (both kinds, after the VGG rows): ``c2st_acc`` and
``c2st_auc``, the held-out accuracy and AUC of a convnet trained from scratch to tell the
samples from real images (``frame.eval.c2st``; with a 95% interval; 1/2 = it cannot tell;
the slow one: ``c2st=False`` leaves it out), and ``c2st_bits``, its held-out information
(0 at chance, 1 when sure and right on every image: it ranks sets that both read accuracy 1);
``spectrum``, the distance of the radially averaged log power spectra, and ``grid_peak``, the samples' power at the periods 2, 4, 8 and
16 px relative to the real images' (``frame.eval.spectra``; its ceiling is 1.5, the level of a
visible grid, since noise has no grid); objects only: ``copies``, the fraction of samples that
are near-copies of a training image, and ``copy_ratio``, their median distance to the nearest
training image relative to a real image's (``frame.eval.copies``; the floor: every reference
image searched for among the others; the ceiling: training images themselves, 1 and 0);
objects whose reference images are cropped faces: ``face_auc``, how much more face-like a
face detector trained on other faces finds the real images than the samples
(``frame.eval.faces``; against every reference image, for nothing is fit; 1/2 = as face-like,
its floor; with a 95% interval; the table marks it "face net").

The feature metrics are **VGG-16 feature distances, not Inception FID: not comparable with
published FIDs** (``format_table`` prints this line); the table marks them "VGG*": computed
on the ImageNet VGG-16 whose feature statistics FRAME models are trained to match, so they are
partly blind to what such a model gets wrong. The pixel rows are not.

A further measure plugs in at one place: its keys go into ``OBJECT_METRICS`` and/or
``TEXTURE_METRICS`` (``frame.eval.names``: the table's order), its raw values into the dicts of
:meth:`Evaluator._pixels` (one set against real images; it serves the samples, the floor and
the ceiling alike), and a lower-is-better distance needs nothing else (``HIGHER_IS_BETTER``,
``VGG_METRICS`` otherwise). ``frame-eval``'s table and JSON and the ``EvalMetrics`` callback
show every key the evaluator returns.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from frame.eval.c2st import c2st
from frame.eval.copies import copy_scores, held_out_distances, nearest_distances
from frame.eval.distribution import frechet_distance, kid, prdc
from frame.eval.faces import face_auc, face_logits, looks_like_faces
from frame.eval.features import VGGFeatures, as_rgb01
from frame.eval.names import C2ST_METRICS, FACE_METRICS, HIGHER_IS_BETTER, OBJECT_METRICS, TEXTURE_METRICS, VGG_METRICS
from frame.eval.pixels import colour_histogram_distance, distinct_count, pixel_moments
from frame.eval.portilla import PSReference, ps_distance, ps_geometry, ps_reference
from frame.eval.spectra import GRID_PEAK_BAD, grid_peak, spectrum_distance
from frame.eval.texture import TextureReference, gram_distance, random_crops, sliced_wasserstein, texture_reference
from frame.nets.face_net import ONet, load_face_net
from frame.nets.weights import WeightsUnavailableError

NOT_FID = "VGG-16 feature distances, not Inception FID: not comparable with published FIDs"
VGG_NOTE = "VGG*: VGG features the model is trained on (the ImageNet VGG-16 whose statistics FRAME models match)"
FACE_NOTE = "face net: a face detector trained on other faces (MTCNN's ONet), which no FRAME model sees"
KINDS = ("objects", "texture")
#: textures: the classifier trains on random crops of this fraction of each crop's side
C2ST_CROP = 0.75
#: objects: the classifier sees images below this side upsampled to it (frame.eval.c2st)
C2ST_OBJECT_SIDE = 64
TEXTURE_SPECTRUM_SEGMENT = 32  # textures: spectra are the mean over tiles of this side (frame.eval.spectra)
PS_CROPS = 32  # crops per set for the Portilla-Simoncelli distance (its cost grows with their number and area)
#: after a failed fetch of the face detector, an ``auto`` face judge tries again only this many seconds later
QUIET_AFTER_FAILURE = 24 * 3600.0


@dataclass(frozen=True)
class Score:
    """One metric: the samples' value, the real-vs-real floor, the failed-sampler ceiling."""

    value: float
    floor: float
    ceiling: float
    std: float | None = None
    interval: tuple[float, float] | None = None  # the value's 95% interval, where the metric has one

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
        seed: the split, crops, noise, KID subsets and the classifier.
        c2st: score the two-sample classifier rows (seconds per call; ``__call__`` can
            override it per call).
        c2st_folds, c2st_epochs: the classifier's cross-validation folds and epochs.
        faces: objects: the face judge's row ``face_auc`` (``frame.eval.faces``): ``True``, ``False``, or
            ``"auto"``, on where the detector finds the reference images to be cropped faces (an ``"auto"``
            judge whose weights cannot be fetched is left out with a warning, and tries again a day later; ``True``
            raises).
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
        c2st: bool = True,
        c2st_folds: int = 5,
        c2st_epochs: int = 30,
        faces: bool | str = "auto",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if faces not in (True, False, "auto"):
            raise ValueError(f"faces must be true, false or auto, got {faces!r}")
        self.kind = kind
        self.reference = as_rgb01(reference).cpu()
        self.features = features or VGGFeatures(source=source, cache_dir=cache_dir)
        self.ceiling = None if ceiling is None else as_rgb01(ceiling).cpu()
        self.crop_size = crop_size
        self.n_crops = int(n_crops)
        self.distinct_threshold = float(distinct_threshold)
        self.k = int(k)
        self.seed = int(seed)
        self.c2st = bool(c2st)
        self.c2st_folds, self.c2st_epochs = int(c2st_folds), int(c2st_epochs)
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
            # copies: every reference image's distance to its nearest other one (a new real image's)
            self._held_out = held_out_distances(self.reference)
            self._typical = float(self._held_out.quantile(0.5))
        self.face_net, self._real_face_logits = self._face_judge(faces, cache_dir) if kind == "objects" else (None, None)
        self._calibration: tuple[dict[str, float], dict[str, float]] | None = None
        self._c2st_calibration: tuple[dict[str, float], dict[str, float]] | None = None
        self._crops_b: Tensor | None = None
        self._texture_b: TextureReference | None = None
        self._ps_b: PSReference | None = None

    def _face_judge(self, faces: bool | str, cache_dir: str | None) -> tuple[ONet | None, Tensor | None]:
        """The face detector and the reference's logits where the face judge runs (``faces``: see the class), else Nones."""
        if faces is False:
            return None, None
        try:
            net = load_face_net(cache_dir, quiet_after_failure=None if faces is True else QUIET_AFTER_FAILURE)
        except WeightsUnavailableError as e:
            if faces is True:
                raise
            warnings.warn(f"face_auc is left out: {str(e).splitlines()[0]}", stacklevel=3)
            return None, None
        real = face_logits(net, self.reference)  # nothing is fit: every reference image counts
        return (net, real) if faces is True or looks_like_faces(real) else (None, None)

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
        values.update(self._pixels(images, self.half_b))
        return values

    def _texture(self, crops: Tensor) -> dict[str, float]:
        maps = self.features.maps(crops)
        values = {"gram_rel": gram_distance(maps, self._texture_b), "swd_rel": sliced_wasserstein(maps, self._texture_b)}
        values["ps"] = ps_distance(self._ps_crops(crops), self._ps_b)
        values.update(pixel_moments(crops, self._crops_b))
        values["colour_hist"] = colour_histogram_distance(crops, self._crops_b)
        values.update(self._pixels(crops, self._crops_b))
        return values

    def _pixels(self, images: Tensor, real: Tensor) -> dict[str, float]:
        """The cheap measures outside VGG-16 of one set against the real set (spectra; objects: copies)."""
        segment = TEXTURE_SPECTRUM_SEGMENT if self.kind == "texture" else None
        values = {"spectrum": spectrum_distance(images, real, segment), "grid_peak": grid_peak(images, real)}
        if self.kind == "objects":
            values.update(copy_scores(nearest_distances(images, self.reference), self._typical))
        if self.face_net is not None:
            values.update(face_auc(face_logits(self.face_net, images), self._real_face_logits))
        return values

    def _c2st(self, images: Tensor, real: Tensor) -> dict[str, float]:
        """The two-sample classifier of one set against the real set: accuracy and AUC, each with its interval."""
        if min(len(images), len(real)) < self.c2st_folds:
            return {}  # too few images to cross-validate: the classifier's rows are left out
        result = c2st(images, real, folds=self.c2st_folds, epochs=self.c2st_epochs,
                      crop=C2ST_CROP if self.kind == "texture" else None, seed=self.seed,
                      min_side=None if self.kind == "texture" else C2ST_OBJECT_SIDE)
        return {
            "c2st_acc": result.accuracy, "c2st_acc_low": result.accuracy_interval[0],
            "c2st_acc_high": result.accuracy_interval[1], "c2st_auc": result.auc, "c2st_auc_low": result.auc_interval[0],
            "c2st_auc_high": result.auc_interval[1], "c2st_p": result.p_value, "c2st_bits": result.information,
        }

    def _sets(self, samples: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(samples, floor set, ceiling set, real set) as compared: objects subsets of n, texture crops."""
        samples = as_rgb01(samples).cpu()
        if self.kind == "objects":
            bad = self.ceiling if self.ceiling is not None else self._noise(self.half_a)
            return self._subset(samples, 1), self._subset(self.half_a, 4), self._subset(bad, 5), self.half_b
        self._prepare_texture(samples)
        bad = self.ceiling if self.ceiling is not None else self._noise(samples)
        return self._crops(samples, 3), self._crops(self.reference, 4), self._crops(bad, 5), self._crops_b

    def _raw(self, images: Tensor) -> dict[str, float]:
        return self._objects(images) if self.kind == "objects" else self._texture(images)

    def raw(self, samples: Tensor, c2st: bool = False) -> dict[str, float]:
        """The samples' metrics alone (no calibration): ``kid``, ``kid_std``, ``fd``, ... or ``gram_rel``, ...

        ``c2st``: also the classifier's ``c2st_acc``, ``c2st_auc`` (with ``_low``/``_high``), ``c2st_bits`` and ``c2st_p``.
        """
        images, _, _, real = self._sets(samples)
        values = self._raw(images)
        if c2st:
            values.update(self._c2st(images, real))
        return values

    def calibration(self, like: Tensor, c2st: bool = False) -> tuple[dict[str, float], dict[str, float]]:
        """(floor, ceiling) raw metrics, computed once (``like``: samples, for sizes); ``c2st``: with the classifier's."""
        if self._calibration is None:
            _, floor_set, ceiling_set, _ = self._sets(like)
            floor, ceiling = self._raw(floor_set), self._raw(ceiling_set)
            if self.kind == "objects":
                ceiling["distinct"] = 1.0  # the failure distinct counts is collapse: one image repeated
                # the failure copies count is memorising: training images themselves, at distance 0
                ceiling.update(copies=1.0, copy_ratio=0.0)
                floor.update(copy_scores(self._held_out, self._typical))  # every reference image among the others
            # noise has no grid: the ceiling of grid_peak is the level where a grid is there to see
            ceiling["grid_peak"] = GRID_PEAK_BAD
            if "face_auc" in floor:
                floor["face_auc"] = 0.5  # a fixed score ranks two sets of real images alike, on average exactly
            self._calibration = (floor, ceiling)
        if c2st and self._c2st_calibration is None:
            _, floor_set, ceiling_set, real = self._sets(like)
            self._c2st_calibration = (self._c2st(floor_set, real), self._c2st(ceiling_set, real))
        if not c2st:
            return self._calibration
        return (
            {**self._calibration[0], **self._c2st_calibration[0]},
            {**self._calibration[1], **self._c2st_calibration[1]},
        )

    def __call__(self, samples: Tensor, c2st: bool | None = None) -> dict[str, Score]:
        """One :class:`Score` per metric of the kind (``OBJECT_METRICS`` or ``TEXTURE_METRICS``).

        ``c2st``: with the classifier's rows (default: the evaluator's ``c2st``).
        """
        c2st = self.c2st if c2st is None else c2st
        floor, ceiling = self.calibration(samples, c2st)
        values = self.raw(samples, c2st)
        names = OBJECT_METRICS if self.kind == "objects" else TEXTURE_METRICS
        return {name: self._score(name, values, floor, ceiling) for name in names if name in values}

    def c2st_scores(self, samples: Tensor) -> dict[str, Score]:
        """The classifier's rows alone (``c2st_acc``, ``c2st_auc``, ``c2st_bits``)."""
        floor, ceiling = self.calibration(samples, c2st=True)
        images, _, _, real = self._sets(samples)
        values = self._c2st(images, real)
        return {name: self._score(name, values, floor, ceiling) for name in C2ST_METRICS if name in values}

    @staticmethod
    def _score(name: str, values: dict[str, float], floor: dict[str, float], ceiling: dict[str, float]) -> Score:
        interval = (values[f"{name}_low"], values[f"{name}_high"]) if f"{name}_low" in values else None
        return Score(values[name], floor[name], ceiling[name], values.get(f"{name}_std"), interval)

    def setup(self) -> str:
        """One line saying what was compared with what."""
        ceiling = "the given images" if self.ceiling is not None else "white noise"
        copies = "copies: the training images; " if self.kind == "objects" else ""
        ceiling += f" ({copies}grid_peak: {GRID_PEAK_BAD}, a visible grid)"
        if self.kind == "objects":
            taps = "+".join(self.features.layers)
            faces = "" if self.face_net is None else f"; face_auc: MTCNN's ONet face detector, against all {len(self.reference)} real images"
            return (
                f"objects: {self.n} samples vs {len(self.half_b)} held-out real images; floor: {self.n} other real "
                f"images; ceiling: {ceiling}; features: global-average-pooled {taps} (images below "
                f"{self.features.min_size} px upsampled to it){faces}"
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
    """A plain-text table: metric, value (+- std or [95% interval]), floor, ceiling, position, which way is better, judge."""
    lines = [NOT_FID]
    if setup:
        lines.append(setup)
    header = ("metric", "value", "floor (real)", "ceiling", "position", "better", "judge")
    rows = [header]
    for name, score in results.items():
        value = _number(score.value) + (f" +- {score.std:.2g}" if score.std is not None else "")
        if score.interval is not None:
            value += f" [{score.interval[0]:.2f}, {score.interval[1]:.2f}]"
        rows.append((
            name, value, _number(score.floor), _number(score.ceiling), f"{score.position:.2f}",
            "higher" if name in HIGHER_IS_BETTER else "lower", judge(name),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.append("position: 0 = as good as real images (floor), 1 = as bad as the ceiling")
    if any(name in VGG_METRICS for name in results):
        lines.append(VGG_NOTE)
    if any(name in FACE_METRICS for name in results):
        lines.append(FACE_NOTE)
    return "\n".join(lines)


def judge(name: str) -> str:
    """``VGG*`` for the metrics on VGG-16 features the model is trained on, ``face net`` for the face judge's, else ``pixels``."""
    return "VGG*" if name in VGG_METRICS else "face net" if name in FACE_METRICS else "pixels"
