"""Algorithm 1 ("analysis by synthesis"), written once for every FRAME model.

Each training step is one learning iteration t of Algorithm 1:

    1. observed statistics of the batch of training images (no grad);
    3. (re)initialise chains (``frame.buffer.ChainBuffer``);
    5. L Langevin steps (eq. 16) on the persistent chains, warm-started from the last iteration;
    6. synthesized statistics of the chains;
    7. w <- w + gamma (H_obs - H_syn)   (eq. 13/14; eq. 21/27 for learned filters),
       done by the optimizer on ``Energy.contrastive_loss``, whose gradient is exactly that.

A model differs from another only in its energy f(I; w) (``frame.energies``). The module logs
``train/gap_rel`` = ||H_obs - H_syn|| / ||H_obs|| (all layers and per layer) and the mean
f(I; w) of observed and synthesized images per layer; ``frame.run.DivergenceGuard``
watches them. ``train/langevin/drift_cos`` and ``train/langevin/move_rms`` say how the chains
moved in step 5 (``frame.sampling.DriftTrace``): a cosine near -1 means the chains chatter
across the kinks of f, by hops of ``move_rms`` a step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
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

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


def check_settings(image_size: Any, canvas_size: Any, optimizer: Any) -> None:
    """What the model's own arguments must be, as one line naming the config key."""
    def bad(value: Any, low: float, strict: bool = False, integer: bool = False) -> bool:
        kinds = int if integer else (int, float)
        return isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value < low or (strict and value == low)

    if bad(image_size, 1, integer=True):
        raise ValueError(f"model.image_size must be an integer >= 1, got {image_size!r}")
    if canvas_size is not None and bad(canvas_size, 1, integer=True):
        raise ValueError(f"model.canvas_size must be an integer >= 1 or null, got {canvas_size!r}")
    settings = getattr(optimizer, "keywords", {})  # a Hydra partial of a torch optimizer
    for key in ("lr", "momentum", "weight_decay"):
        if key in settings and bad(settings[key], 0, strict=key == "lr"):
            raise ValueError(f"model.optimizer.{key} must be a number {'>' if key == 'lr' else '>='} 0, got {settings[key]!r}")


class FrameModel(pl.LightningModule):
    """Learns the weights of an energy f(I; w) by Algorithm 1.

    Args:
        energy: f(I; w) (``frame.energies``); its input space fixes the chains' channels.
        sampler: the Langevin sampler (eq. 16).
        buffer: a factory taking ``shape=(C, H, W)`` (Hydra ``_partial_`` of
            ``ChainBuffer``, e.g. ``{n_chains: 16, init: zeros, reinit_fraction: 0}``).
        image_size: side of the training images.
        canvas_size: side of the chains (default ``image_size``; larger only for energies whose
            weights are not tied to positions).
        optimizer: a factory taking the parameters (Hydra ``_partial_``); plain SGD makes one
            step exactly eq. (13)/(14) with gamma = lr (per weight or layer with the run's
            ``model.precondition``, ``frame.run.precondition``).
        scheduler: optional factory taking the optimizer, stepped every iteration.
    """

    def __init__(
        self,
        energy: Energy,
        sampler: LangevinSampler,
        buffer: Callable[..., ChainBuffer] | dict[str, Any] | None = None,
        image_size: int = 64,
        canvas_size: int | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    ) -> None:
        super().__init__()
        check_settings(image_size, canvas_size, optimizer)
        canvas = int(canvas_size or image_size)
        energy.check_canvas(int(image_size), canvas)
        self.energy = energy
        self.sampler = sampler
        if hasattr(energy.input_space, "channels_last"):  # grey chains become the net's input in this lay-out
            energy.input_space.channels_last = sampler.channels_last
        make_buffer = buffer if callable(buffer) else partial(ChainBuffer, **(buffer or {"n_chains": 16}))
        self.buffer = make_buffer(shape=(energy.input_space.channels, canvas, canvas))
        self.optimizer_factory = optimizer or partial(torch.optim.SGD, lr=1e-4)
        self.scheduler_factory = scheduler
        self._observed: tuple[Tensor, dict[str, Tensor]] | None = None
        #: the resolved config this module was built from (``frame.run.build.build_model``
        #: sets it); stored in checkpoints so that the commands can rebuild the model
        self.model_config: dict[str, Any] | None = None

    # -- the input space ---------------------------------------------------------------------
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
        self.log_dict(
            {f"train/langevin/{k}": self.mean_over_processes(v.to(self.device)) for k, v in self.sampler.last_trace.items()},
            on_step=True, on_epoch=False,
        )
        return self.energy.contrastive_loss(summary_obs, feats_syn)  # step 7, by the optimizer

    def synthesize(self, observed: Tensor) -> Tensor:
        """Steps 3 and 5: this process's chain starts from the buffer, L Langevin steps, and the
        chains back to the buffer (``frame.buffer.ChainBuffer.starts`` / ``keep``)."""
        start, mask, rows, generator = self.buffer.starts(observed, self.input_space, self.global_rank, self.world_size)
        chains = self.langevin(start, mask=mask, generator=generator, rows=rows)
        self.buffer.keep(chains, self.gather)
        return chains

    def langevin(
        self,
        start: Tensor,
        mask: Tensor | None = None,
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
        rows: tuple[int, int] | None = None,
        progress: bool = False,
        step_size: float | None = None,
        noise: bool | None = None,
    ) -> Tensor:
        """Langevin dynamics (eq. 16) on p(I; w) from `start` (input space), `n_steps` steps of
        `step_size` (default: the sampler's L and delta); only the pixels where `mask` is True move
        (conditional sampling). Training, ``frame.synthesis`` and ``frame.recovery`` all sample
        through this method."""
        bounds = self.input_space.bounds(start.device, start.dtype)
        return self.sampler.sample(
            self.energy, start, mask=mask, bounds=bounds, n_steps=n_steps, progress=progress, generator=generator, rows=rows,
            step_size=step_size, noise=noise,
        )

    def features(self, x: Tensor) -> dict[str, Tensor]:
        with self.sampler.autocast(x.device):
            return self.energy.features(self.sampler.prepare(x))

    @torch.no_grad()
    def observed_features(self, observed: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The features of the observed images and what learning needs of them, computed once
        while the batch stays the same (a full-batch run sees the same images every iteration;
        the filters are frozen). What learning needs: for an energy linear in its features, their
        mean over the batch ([1, ...], fp32), else the features themselves."""
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
    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    @property
    def gather(self) -> Callable[[Tensor], Tensor] | None:
        """All processes' chains from each one's share (None in a single process)."""
        return (lambda x: self.all_gather(x).flatten(0, 1)) if self.world_size > 1 else None

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
            observed = self.to_input(images.to(self.device))
            self.energy.fit(observed)

    def on_train_batch_start(self, batch: Tensor, batch_idx: int) -> None:
        if not self.input_space.is_fitted:  # trained without a data module holding the images
            self.input_space.fit(self.mean_over_processes(batch.float().mean(0, keepdim=True)))
        if not self.energy.is_fitted:
            self.energy.fit(self.to_input(batch))

    # -- monitoring ----------------------------------------------------------------------------
    def log_statistics(self, feats_obs: dict[str, Tensor], feats_syn: dict[str, Tensor]) -> None:
        """Logs the statistics gap |H_obs - H_syn| and the energies, per layer and in all."""
        metrics = statistics_gap(self.energy, feats_obs, feats_syn, self.mean_over_processes)
        self.log("train/gap_rel", metrics.pop("train/gap_rel"), prog_bar=True, on_step=True, on_epoch=False)
        self.log_dict(metrics, on_step=True, on_epoch=False)

    def mean_over_processes(self, value: Tensor) -> Tensor:
        """The mean over all processes (identity in a single process)."""
        if self._trainer is None or self.world_size == 1:
            return value
        return self.trainer.strategy.reduce(value, reduce_op="mean")

    # -- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["frame"] = {"format": 3, "energy": type(self.energy).__name__, "model_config": self.model_config}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # read and upgraded by the run's CheckpointIO (``frame.run.AtomicCheckpointIO``)
        saved = checkpoint["frame"].get("energy")
        if saved is not None and saved != type(self.energy).__name__:
            raise ValueError(
                f"this checkpoint holds a model with a {saved} but the run builds one with a "
                f"{type(self.energy).__name__}: pass the same model=... as the run that wrote it"
            )

