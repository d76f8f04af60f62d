"""Per-weight or per-layer learning rates (Section 5.1), as a callback of the run.

``model.precondition`` scales, before every optimizer step, the gradient of each weight of an
energy linear in w (``obs_variance``), or of each layer (``layer_variance``), by a factor
inversely proportional to the observed variance of its statistic. The factors are measured once:
on the data module's images (the same on every process), or, without a data module holding
them, on the first batch (a mean over processes).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

#: model.precondition -> the energy's method giving the learning-rate factors (Section 5.1)
PRECONDITIONS = {"none": None, "obs_variance": "variance_preconditioner", "layer_variance": "layer_preconditioner"}
#: how many of the data module's images the precondition factors are measured on
PRECONDITION_IMAGES = 256


class Precondition(pl.Callback):
    """Multiplies the energy's weight gradients by the factors of ``model.precondition``."""

    def __init__(self, kind: str = "none") -> None:
        if kind not in PRECONDITIONS:
            raise ValueError(f"model.precondition must be one of {tuple(PRECONDITIONS)}, got {kind!r}")
        self.kind = kind
        self.method = PRECONDITIONS[kind]
        #: layer -> the factor of its gradient (None: not measured yet)
        self.factors: dict[str, Tensor] | None = None
        self.batch: Tensor | None = None

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        if self.method and not hasattr(pl_module.energy, self.method):
            raise ValueError(f"model.precondition={self.kind} needs an energy linear in w; {type(pl_module.energy).__name__} is not")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        # after the model's setup has fitted its input space and energy to the same images
        images = getattr(trainer.datamodule, "images", None)
        if self.method and isinstance(images, Tensor):
            observed = pl_module.to_input(images.to(pl_module.device))
            with torch.no_grad():
                self.factors = self.measure(pl_module, pl_module.features(observed[:PRECONDITION_IMAGES]))

    def measure(self, pl_module: Any, feats_obs: dict[str, Tensor], **kwargs: Any) -> dict[str, Tensor]:
        """The learning-rate factors from observed features."""
        return getattr(pl_module.energy, self.method)(feats_obs, **kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Tensor, batch_idx: int) -> None:
        self.batch = batch

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: Any, optimizer: torch.optim.Optimizer) -> None:
        if not self.method:
            return
        if self.factors is None:  # no data module holding the images: this batch's (the model kept its features)
            feats_obs, _ = pl_module.observed_features(pl_module.to_input(self.batch))
            self.factors = self.measure(pl_module, feats_obs, reduce=pl_module.mean_over_processes)
        for layer, factor in self.factors.items():
            weight = pl_module.energy.weights[layer]
            if weight.grad is not None:
                weight.grad.mul_(factor)
