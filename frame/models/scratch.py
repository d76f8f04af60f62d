"""The multi-layer generative ConvNet learned from scratch (eq. 25-27; Section 9, Fig. 12, Table 1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from frame.buffer import ChainBuffer
from frame.callbacks.detectors import DetectorMaps
from frame.energies.scratch import ScratchEnergy
from frame.models.base import FrameModel, split_options


class ScratchFrame(FrameModel):
    """Every layer learned by Algorithm 1 with eq. (27); the paper's face net by default.

    Args:
        reference_mean: ``grey`` or ``data``: the mean of the reference distribution q(I) of
            eq. (26) (see ``frame.energies.pixels``). ``data`` is the mean training image, taken
            from the data module's images when training starts (or, without a data module
            holding ``images``, from the first training batch, averaged over processes) and
            saved in checkpoints.
        image_size: side of the training images; the chains have the same size for the dense
            readout (a weight per position), any size >= it for the stationary/sum readouts.
        init_from: a checkpoint of a shallower (or the same) net whose conv layers initialise
            this one's lowest layers when training starts: with ``frozen_layers`` this is the
            layer-by-layer growth of Section 7.3 (learn layer 1, freeze it, add layer 2, ...);
            with ``frozen_layers=0`` it refines all layers together.
        detectors: keyword arguments of ``frame.callbacks.DetectorMaps`` for the top conv
            layer's detectors (eq. 22), or ``None``.
        extractor: unused: a net learned from scratch has no pretrained filters. Accepted (and
            ignored) so that overrides written for every model, such as debug=fast's
            ``model.extractor.source=random``, compose with this one too.
        **kwargs: the net's options (layers, channels, readout, init_std, frozen_layers,
            activation: see ``frame.energies.scratch.ScratchEnergy``; the paper's face net by
            default) and ``FrameModel``'s (sampler, n_chains, chains, optimizer, scheduler, ...).
    """

    def __init__(
        self,
        image_size: int = 64,
        reference_mean: str = "grey",
        init_from: str | None = None,
        canvas_size: int | None = None,
        detectors: dict[str, Any] | None = None,
        extractor: Any = None,
        **kwargs: Any,
    ) -> None:
        if extractor is not None and not (isinstance(extractor, Mapping) and "_target_" not in extractor):
            raise ValueError("model=scratch learns every layer from the image: it takes no pretrained extractor")
        if kwargs.get("lr_scaling", "none") != "none":
            raise ValueError(
                "model.lr_scaling=obs_variance preconditions the linear weights of deep FRAME (eq. 9/10); "
                "learned filters take their per-layer normalisation from the optimizer (e.g. Adam): use none"
            )
        energy_options, kwargs = split_options(ScratchEnergy, kwargs)
        canvas = int(canvas_size or image_size)
        if energy_options.get("readout", "dense") == "dense" and canvas != image_size:
            raise ValueError(
                f"model.canvas_size ({canvas}) must equal data.image_size ({image_size}) with the dense "
                "readout: its weights w_(k,x) are tied to positions"
            )
        energy = ScratchEnergy(image_size=image_size, reference_mean=reference_mean, **energy_options)
        super().__init__(energy=energy, canvas_size=canvas, **kwargs)
        # the chains have the net's channels (1 for grey images), not the base's RGB default
        self.buffer = ChainBuffer(
            self.buffer.n_chains, (energy.channels, canvas, canvas),
            init=self.buffer.init, reinit_fraction=self.buffer.reinit_fraction,
        )
        self.init_from = init_from
        self.detectors = dict(detectors) if detectors is not None else None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        # Before Lightning restores a resumed run's checkpoint, which then takes precedence.
        images = getattr(self.trainer.datamodule, "images", None) if stage == "fit" else None
        if isinstance(images, torch.Tensor):
            self.energy.preprocessing.fit(images)
        if stage == "fit" and self.init_from:
            from frame.checkpoint import read_checkpoint  # here: frame.checkpoint imports frame.models

            state_dict = read_checkpoint(self.init_from)["state_dict"]
            self.energy.load_layers(state_dict)

    def on_train_batch_start(self, batch: torch.Tensor, batch_idx: int) -> None:
        if not bool(self.energy.preprocessing.fitted):  # trained without a data module's images
            self.energy.preprocessing.fit(self.mean_over_processes(batch.float().mean(0, keepdim=True)))

    def configure_callbacks(self) -> list:
        return [DetectorMaps(**self.detectors)] if self.detectors is not None else []
