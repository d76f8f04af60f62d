"""Detector maps delta_{j,y}(I) of eq. (22) for observed and synthesized images (the E-step view).

For learned filters F_j (the generative ConvNet, eq. 17/20, or the top layer of a net learned
from scratch) delta_{j,y}(I) = 1 where filter j's pre-activation at position y is positive:
the hard E-step of the EM reading of eq. (21) (Section 7.3). Learning updates F_j only from the
positions where pattern j is detected. This callback shows where each filter fires, on the
training images and on the current chains, and logs how often it fires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from frame.callbacks.periodic import EveryNSteps
from frame.callbacks.samples import publish_grid
from frame.grids import make_grid


def detector_rows(images: Tensor, maps: Tensor, max_filters: int | None = None) -> list[Tensor]:
    """Per image: the image followed by its J binary maps, upsampled (nearest) to the image size."""
    maps = maps[:, :max_filters].float()
    size = images.shape[-2:]
    up = torch.nn.functional.interpolate(maps, size=size, mode="nearest")
    tiles = []
    for image, image_maps in zip(images, up):
        tiles.append(image)
        tiles += [m.expand(3, -1, -1) for m in image_maps]
    return tiles


class DetectorMaps(EveryNSteps):
    """Logs delta_{j,y} for observed images and chains, and each filter's activation frequency.

    Every ``every_n_steps`` steps (and at the end) writes ``<dirpath>/step_XXXXXX.png``: one row
    per image (first the observed images, then the chains), the image followed by the binary
    map of each filter (white = detected); also to W&B when a ``WandbLogger`` is present.
    Every ``metrics_every_n_steps`` steps logs ``detectors/freq_obs/jNN`` and
    ``detectors/freq_syn/jNN`` (fraction of positions where filter j fires) and their means.

    Works with any energy that has ``detector_maps(x) -> [B, J, h, w]`` (x in input space);
    does nothing for the others, so the default callbacks can list it for every model.

    Args:
        every_n_steps: how often to write the picture.
        metrics_every_n_steps: how often to log the frequencies (0 = never).
        max_images: observed images and chains shown.
        max_filters: filters shown per image (default: all).
        max_frequency_images: observed images used for the frequencies.
        dirpath: folder for the PNGs (default ``<trainer.default_root_dir>/detectors``).
    """

    def __init__(self, every_n_steps: int = 50, metrics_every_n_steps: int = 1, max_images: int = 4,
                 max_filters: int | None = None, max_frequency_images: int = 64, dirpath: str | None = None) -> None:
        super().__init__(every_n_steps, "detector_maps")
        if metrics_every_n_steps < 0:
            raise ValueError(f"callbacks.detector_maps.metrics_every_n_steps must be >= 0, got {metrics_every_n_steps}")
        self.metrics_every_n_steps, self.max_frequency_images = metrics_every_n_steps, max_frequency_images
        self.max_images, self.max_filters, self.dirpath = max_images, max_filters, dirpath

    @staticmethod
    def maps(pl_module: Any, x: Tensor) -> Tensor:
        energy = pl_module.energy
        if not hasattr(energy, "detector_maps"):
            raise TypeError(f"{type(energy).__name__} has no detector_maps(): DetectorMaps needs learned filters")
        with torch.no_grad():
            return energy.detector_maps(x.float())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Tensor, batch_idx: int) -> None:
        if not hasattr(pl_module.energy, "detector_maps"):
            return
        if self.metrics_every_n_steps and trainer.global_step % self.metrics_every_n_steps == 0:
            self.log_frequencies(pl_module, batch)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def frequencies(self, pl_module: Any, batch: Tensor) -> dict[str, Tensor]:
        """Fraction of (image, position) pairs where each filter fires, observed and synthesized."""
        obs = self.maps(pl_module, pl_module.to_input(batch[: self.max_frequency_images]))
        syn = self.maps(pl_module, pl_module.buffer.chains)
        return {"obs": obs.float().mean(dim=(0, 2, 3)), "syn": syn.float().mean(dim=(0, 2, 3))}

    def log_frequencies(self, pl_module: Any, batch: Tensor) -> None:
        metrics = {}
        for side, freq in self.frequencies(pl_module, batch).items():
            metrics[f"detectors/freq_{side}"] = freq.mean()
            metrics.update({f"detectors/freq_{side}/j{j:02d}": v for j, v in enumerate(freq)})
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)

    @rank_zero_only
    def run(self, trainer: pl.Trainer, pl_module: Any) -> None:
        step = trainer.global_step
        observed = self.last_batch[: self.max_images].detach().float()
        chains = pl_module.buffer.chains[: self.max_images]
        tiles = detector_rows(observed.clamp(0, 1).cpu(), self.maps(pl_module, pl_module.to_input(observed)).cpu(), self.max_filters)
        tiles += detector_rows(pl_module.to_images(chains).cpu(), self.maps(pl_module, chains).cpu(), self.max_filters)
        n_filters = len(tiles) // (len(observed) + len(chains)) - 1
        grid = make_grid(torch.stack(tiles), nrow=n_filters + 1, padding=2, pad_value=0.5)
        caption = f"rows: {len(observed)} observed, then {len(chains)} synthesized; columns: image, delta_j (eq. 22), step {step}"
        publish_grid(trainer, grid, self.folder(trainer)[0], "detectors", caption)

    def folder(self, trainer: pl.Trainer) -> tuple[Path, str]:
        return Path(self.dirpath or Path(trainer.default_root_dir) / "detectors"), "callbacks.detector_maps.dirpath"
