"""Algorithm 1 ("analysis by synthesis"), written once for every FRAME model.

Each training step is one learning iteration t of Algorithm 1:

    1. observed statistics of the batch of training images (no grad);
    3. (re)initialise chains (``frame.buffer.ChainBuffer``, or another chain source);
    5. L Langevin steps (eq. 16) on the persistent chains, warm-started from the last iteration
       (``frame.sampling.LangevinSampler``; coarse to fine: ``frame.coarse_to_fine``);
    6. synthesized statistics of the chains;
    7. w <- w + gamma (H_obs - H_syn)   (eq. 13/14; eq. 21/27 for learned filters),
       done by the optimizer on ``Energy.contrastive_loss``, whose gradient is exactly that.

A model differs from another only in its energy f(I; w) (``frame.energies``) and its sampler.
It logs ``train/gap_rel`` = ||H_obs - H_syn|| / ||H_obs|| (all layers and per layer), the mean
f(I; w) of observed and synthesized images per layer, and how the chains moved in step 5
(``train/langevin/*``, ``frame.sampling.DriftTrace``); ``frame.run.DivergenceGuard`` watches them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from frame.buffer import ChainBuffer
from frame.energies.base import Energy
from frame.input_space import InputSpace
from frame.models.statistics import statistics_gap
from frame.sampling import LangevinSampler
from frame.schedules import OptimizerFactory, checked_optimizer

#: 16 persistent chains started at the mean image (Algorithm 1, Section 5.2)
DEFAULT_BUFFER = partial(ChainBuffer, n_chains=16)


class FrameModel(pl.LightningModule):
    """Learns the weights of an energy f(I; w) by Algorithm 1.

    Args:
        energy: f(I; w) (``frame.energies``); its input space fixes the chains' channels.
        sampler: the Langevin sampler (eq. 16), or the coarse-to-fine one of a multigrid energy.
        buffer: the chain source, a factory taking ``shape=(C, H, W)`` (the Hydra ``_partial_`` of
            ``ChainBuffer``, or of ``frame.recovery.RecoveryChains``).
        image_size: side of the training images.
        canvas_size: side of the chains (default ``image_size``; larger only for energies whose
            weights are not tied to positions).
        optimizer: a factory taking the parameters (Hydra ``_partial_``); plain SGD makes one
            step exactly eq. (13)/(14) with gamma = lr (per weight or layer with the run's
            ``model.precondition``, ``frame.run.precondition``).
        scheduler: optional factory taking the optimizer, stepped every iteration.
    """

    def __init__(self, energy: Energy, sampler: LangevinSampler, buffer: Callable[..., ChainBuffer] = DEFAULT_BUFFER, image_size: int = 64,
                 canvas_size: int | None = None, optimizer: OptimizerFactory | None = None,
                 scheduler: Callable[[torch.optim.Optimizer], Any] | None = None) -> None:
        super().__init__()
        canvas = energy.canvas(image_size, canvas_size)
        self.energy = energy
        self.sampler = sampler
        if hasattr(energy.input_space, "channels_last"):  # grey chains become the net's input in this lay-out
            energy.input_space.channels_last = sampler.channels_last
        self.buffer = buffer(shape=(energy.input_space.channels, canvas, canvas))
        self.optimizer_factory = checked_optimizer(optimizer)
        self.scheduler_factory = scheduler
        self._observed: tuple[Tensor, dict[str, Tensor], dict[str, Tensor]] | None = None
        #: the config it was built from (``frame.run.build.build_model`` sets it; checkpoints store it)
        self.model_config: dict[str, Any] | None = None

    @property
    def input_space(self) -> InputSpace:
        return self.energy.input_space

    def to_input(self, images: Tensor) -> Tensor:
        """Images (RGB or grey in [0, 1]) -> the input space of the chains."""
        return self.input_space.to_input(images)

    def to_images(self, x: Tensor) -> Tensor:
        """Chains -> RGB images in [0, 1] (clamped), for display."""
        return self.input_space.to_images(x.float()).clamp(0, 1)

    # -- Algorithm 1 ---------------------------------------------------------------------------
    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        observed = self.to_input(batch)
        _, summary_obs = self.observed_features(observed)  # step 1
        synthesized = self.synthesize(observed)  # steps 3-5
        feats_syn = self.features(synthesized)  # step 6
        self.log_statistics(summary_obs, feats_syn)
        return self.energy.contrastive_loss(summary_obs, feats_syn)  # step 7, by the optimizer

    def synthesize(self, observed: Tensor) -> Any:
        """Steps 3 and 5: this process's chain starts from the buffer, L Langevin steps, the chains
        back to the buffer. Returns what the sampler synthesized (the chains, or every scale's)."""
        start, mask, rows, generator = self.buffer.starts(observed, self.input_space, self.global_rank, self.world_size)
        bounds = self.input_space.bounds(start.device, start.dtype)
        synthesized = self.sampler.synthesize(self.energy, start, mask=mask, bounds=bounds, generator=generator, rows=rows)
        self.buffer.keep(self.sampler.finest(synthesized), self.gather)
        return synthesized

    def langevin(self, start: Tensor, mask: Tensor | None = None, **options: Any) -> Tensor:
        """Langevin dynamics (eq. 16) on p(I; w) from `start` (input space), moving only where `mask`
        is True; `options` as ``LangevinSampler.sample``. Sampling and recovery go through here."""
        bounds = self.input_space.bounds(start.device, start.dtype)
        return self.sampler.sample(self.energy, start, mask=mask, bounds=bounds, **options)

    def features(self, x: Any) -> dict[str, Tensor]:
        """The energy's features of images or synthesized chains, as the sampler runs the net."""
        return self.sampler.features(self.energy, x)

    @torch.no_grad()
    def observed_features(self, observed: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The features of the observed images and what learning needs of them (for an energy linear
        in its features their batch mean, [1, ...] fp32), computed once per distinct batch."""
        cached = self._observed
        if cached is None or cached[0].shape != observed.shape or not torch.equal(cached[0], observed):
            feats = self.features(observed)
            summary = {k: v.float().mean(0, keepdim=True) for k, v in feats.items()} if self.energy.linear_in_features else feats
            self._observed = cached = (observed, feats, summary)
        return cached[1], cached[2]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory([p for p in self.energy.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # -- what the data sets before the first iteration ----------------------------------------
    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        if self.sampler.n_steps < 1:  # sampling alone may take 0 steps (the starts)
            raise ValueError(f"model.sampler.n_steps must be an integer >= 1 (Langevin steps per learning iteration), got {self.sampler.n_steps}")
        # before a resumed run's checkpoint is restored, which then takes precedence
        images = getattr(self.trainer.datamodule, "images", None)
        self.buffer.setup(images, self.world_size)
        if isinstance(images, Tensor):
            self.input_space.fit(images)
            self.energy.fit(self.to_input(images.to(self.device)))

    def on_train_batch_start(self, batch: Tensor, batch_idx: int) -> None:
        if not self.input_space.is_fitted:  # trained without a data module holding the images
            self.input_space.fit(self.mean_over_processes(batch.float().mean(0, keepdim=True)))
        if not self.energy.is_fitted:
            self.energy.fit(self.to_input(batch))

    # -- processes and monitoring ----------------------------------------------------------------
    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    @property
    def gather(self) -> Callable[[Tensor], Tensor] | None:
        """All processes' chains from each one's share (None in a single process)."""
        return (lambda x: self.all_gather(x).flatten(0, 1)) if self.world_size > 1 else None

    def mean_over_processes(self, value: Tensor) -> Tensor:
        """The mean over all processes (identity in a single process)."""
        return value if self.world_size == 1 else self.trainer.strategy.reduce(value, reduce_op="mean")

    def log_statistics(self, feats_obs: dict[str, Tensor], feats_syn: dict[str, Tensor]) -> None:
        """Logs the statistics gap |H_obs - H_syn|, the energies and the chains' moves."""
        metrics = statistics_gap(self.energy, feats_obs, feats_syn, self.mean_over_processes)
        self.log("train/gap_rel", metrics.pop("train/gap_rel"), prog_bar=True, on_step=True, on_epoch=False)
        metrics.update({f"train/langevin/{k}": self.mean_over_processes(v.to(self.device)) for k, v in self.sampler.last_trace.items()})
        self.log_dict(metrics, on_step=True, on_epoch=False)
