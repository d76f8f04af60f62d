"""Sample quality while training: model-independent metrics of the chains every N steps.

Every ``every_n_steps`` steps (and at the end) the chains (``pl_module.buffer.chains``, as
images through ``pl_module.to_images``) are scored against the training images
(``trainer.datamodule.observed_images()``, else the current batch) with ``frame.eval``, and
logged as ``eval/<metric>`` to every logger of the run (W&B history, metrics.csv), with
``eval/<metric>_floor`` (real images against real images) and ``eval/<metric>_ceiling``
(white noise) so a chart shows where the curve sits. The VGG-16 features, the reference
features and the floor and ceiling are computed once, at the first evaluation.

``kind="objects"``: ``eval/kid`` (+ ``eval/kid_std``), ``eval/fd``, ``eval/precision``,
``eval/recall``, ``eval/density``, ``eval/coverage``, ``eval/distinct``, pixel checks, and the
measures outside VGG-16 that cost milliseconds: ``eval/spectrum``, ``eval/grid_peak``,
``eval/copies``, ``eval/copy_ratio``.
``kind="texture"``: ``eval/gram_rel``, ``eval/swd_rel``, pixel checks, ``eval/spectrum``,
``eval/grid_peak``.
The two-sample classifier (``eval/c2st_acc``, ``eval/c2st_auc``, with ``_low``/``_high``, the
95% interval, and ``eval/c2st_bits``, its held-out information in bits) trains a convnet several times over, seconds to a minute: it runs once at the end
of the run (``c2st_at_end``) and, on request, every ``c2st_every_n_steps`` steps.
``kind="auto"`` (the default config's): objects when there are at least 12 training images and
6 chains (what KID and coverage need), else texture (one exemplar, or a few).
VGG-16 feature distances, not Inception FID: not comparable with published FIDs.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from frame.callbacks.periodic import EveryNSteps
from frame.eval.features import MIN_SIZE
from frame.eval.kind import choose_kind, make_evaluator
from frame.eval.report import KINDS, Evaluator, Score


class EvalMetrics(EveryNSteps):
    """Logs ``eval/*`` quality metrics of the chains every ``every_n_steps`` steps.

    Args:
        every_n_steps: how often to evaluate (each evaluation runs VGG-16 on the samples).
        n_samples: at most this many chains are scored (objects: also at most half the
            training images, the other half being the reference; at least 6 are needed).
        kind: ``objects`` (KID, FD, coverage, ...), ``texture`` (Gram, sliced Wasserstein) or
            ``auto`` (see the module docstring).
        max_reference: at most this many training images (a fixed random subset) are the
            reference (None: all); bounds the first evaluation on large data sets.
        source: VGG-16 weights (``caffe``; ``random`` only in tests).
        cache_dir: weights cache (default ``$FRAME_CACHE`` or ``~/.cache/frame``).
        min_size: objects: images are upsampled to at least this side before VGG-16.
        n_crops: texture: crops per compared set.
        log_calibration: also log ``eval/<metric>_floor`` and ``eval/<metric>_ceiling``.
        seed: splits, crops, noise, KID subsets and the classifier (the global random state is untouched).
        c2st_at_end: run the two-sample classifier after the last step.
        c2st_every_n_steps: also run it every this many steps (a multiple of ``every_n_steps``; None: only at the end).
        faces: objects: the face judge (``eval/face_auc``, ``frame.eval.faces``): ``auto`` (where a face detector
            finds the training images to be cropped faces), ``true`` or ``false``.
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        n_samples: int = 64,
        kind: str = "objects",
        max_reference: int | None = None,
        source: str = "caffe",
        cache_dir: str | None = None,
        min_size: int = MIN_SIZE,
        n_crops: int = 32,
        log_calibration: bool = True,
        seed: int = 0,
        c2st_at_end: bool = True,
        c2st_every_n_steps: int | None = None,
        faces: bool | str = "auto",
    ) -> None:
        super().__init__(every_n_steps, "eval_metrics")
        if c2st_every_n_steps is not None and (c2st_every_n_steps < 1 or c2st_every_n_steps % self.every_n_steps):
            raise ValueError(
                f"callbacks.eval_metrics.c2st_every_n_steps must be a multiple of every_n_steps ({self.every_n_steps}) "
                f"or null, got {c2st_every_n_steps}"
            )
        if kind not in (*KINDS, "auto"):
            raise ValueError(f"callbacks.eval_metrics.kind must be one of {(*KINDS, 'auto')}, got {kind!r}")
        if faces not in (True, False, "auto"):
            raise ValueError(f"callbacks.eval_metrics.faces must be true, false or auto, got {faces!r}")
        if max_reference is not None and max_reference < 12:
            raise ValueError(f"callbacks.eval_metrics.max_reference must be >= 12 or null, got {max_reference}")
        self.n_samples = n_samples
        self.kind = kind
        self.max_reference = max_reference
        self.source = source
        self.cache_dir = cache_dir
        self.min_size = min_size
        self.n_crops = n_crops
        self.log_calibration = log_calibration
        self.seed = seed
        self.c2st_at_end = c2st_at_end
        self.c2st_every_n_steps = c2st_every_n_steps
        self.faces = faces
        self.evaluator: Evaluator | None = None
        self._c2st_step = -1

    def _reference(self, trainer: pl.Trainer) -> Tensor:
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "observed_images"):
            images = datamodule.observed_images()
        else:
            images = self.last_batch
        if self.max_reference is not None and len(images) > self.max_reference:
            order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
            images = images[order[: self.max_reference]]
        return images

    def _evaluator(self, trainer: pl.Trainer, pl_module: Any, n_samples: int) -> Evaluator:
        if self.evaluator is None:
            reference = self._reference(trainer).detach().float().cpu()
            self.kind = choose_kind(self.kind, len(reference), n_samples)
            features = {"source": self.source, "cache_dir": self.cache_dir, "min_size": self.min_size}
            chains = " chains (callbacks.eval_metrics.n_samples of the model.buffer.n_chains)"
            self.evaluator = make_evaluator(reference, n_samples, self.kind, "callbacks.eval_metrics.kind", features, pl_module.device,
                                            chains, n_crops=self.n_crops, seed=self.seed, c2st=False, faces=self.faces,
                                            cache_dir=self.cache_dir)
        return self.evaluator

    def _images(self, pl_module: Any) -> Tensor:
        with torch.no_grad():
            return pl_module.to_images(pl_module.buffer.chains[: self.n_samples]).detach().float().cpu()

    def scores(self, trainer: pl.Trainer, pl_module: Any, c2st: bool = False) -> dict[str, Score]:
        """The chains' scores now (the first call builds the features and the calibration); ``c2st``: with the classifier's."""
        images = self._images(pl_module)
        return self._evaluator(trainer, pl_module, len(images))(images, c2st=c2st)

    def c2st_scores(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, Score]:
        """The two-sample classifier's rows alone, now (the request path: seconds to a minute)."""
        images = self._images(pl_module)
        return self._evaluator(trainer, pl_module, len(images)).c2st_scores(images)

    @rank_zero_only
    def run(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """Scores the chains and logs ``eval/*`` (with the classifier's rows every ``c2st_every_n_steps``)."""
        step = trainer.global_step
        c2st = self.c2st_every_n_steps is not None and step % self.c2st_every_n_steps == 0
        self._log(trainer, self.scores(trainer, pl_module, c2st=c2st))
        if c2st:
            self._c2st_step = step

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        super().on_train_end(trainer, pl_module)  # the last step's scores, unless already logged
        if self.c2st_at_end and self.last_batch is not None and self._c2st_step != trainer.global_step:
            self._log_c2st(trainer, pl_module)

    @rank_zero_only
    def _log_c2st(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._log(trainer, self.c2st_scores(trainer, pl_module))
        self._c2st_step = trainer.global_step

    def _log(self, trainer: pl.Trainer, scores: dict[str, Score]) -> None:
        metrics: dict[str, float] = {}
        for name, score in scores.items():
            metrics[f"eval/{name}"] = score.value
            if score.std is not None:
                metrics[f"eval/{name}_std"] = score.std
            if score.interval is not None:
                metrics[f"eval/{name}_low"], metrics[f"eval/{name}_high"] = score.interval
            if self.log_calibration:
                metrics[f"eval/{name}_floor"] = score.floor
                metrics[f"eval/{name}_ceiling"] = score.ceiling
        for logger in trainer.loggers:  # in the row of this step's training metrics
            logger.log_metrics(metrics, step=self.row)
        # visible to train()'s return value and to sweeps (e.g. optimized_metric=eval/kid)
        trainer.callback_metrics.update({key: torch.tensor(value) for key, value in metrics.items()})
