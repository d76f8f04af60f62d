"""Sample grids: the current chains next to the observed images, as PNG and in W&B."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from frame.callbacks.periodic import EveryNSteps
from frame.grids import make_grid, save_grid, to_uint8
from frame.outputs import write_file


def square_nrow(n: int) -> int:
    """Images per row of a near-square grid of `n` images."""
    return max(1, math.ceil(math.sqrt(n)))


def side_by_side(observed: Tensor, synthesized: Tensor, padding: int = 2) -> Tensor:
    """One image: the grid of observed images left, the grid of chains right (white gap)."""
    left = make_grid(observed, nrow=square_nrow(len(observed)), padding=padding, pad_value=1.0)
    right = make_grid(synthesized, nrow=square_nrow(len(synthesized)), padding=padding, pad_value=1.0)
    height = max(left.shape[1], right.shape[1])
    left = torch.nn.functional.pad(left, (0, 0, 0, height - left.shape[1]), value=1.0)
    right = torch.nn.functional.pad(right, (0, 0, 0, height - right.shape[1]), value=1.0)
    gap = torch.ones(3, height, 4 * padding)
    return torch.cat([left, gap, right], dim=2)


def publish_grid(trainer: pl.Trainer, grid: Tensor, folder: Path, key: str, caption: str) -> Path:
    """Writes ``<folder>/step_XXXXXX.png`` and logs the same pixels to every W&B logger of the run.

    W&B gets uint8 0-255 pixels: a [0, 1] float grid handed to ``log_image`` arrives as a black image.
    """
    step = trainer.global_step
    path = write_file(folder / f"step_{step:06d}.png", lambda tmp: save_grid(grid, tmp))
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[to_uint8(grid)], step=step, caption=[caption])
    return path


class SampleGrid(EveryNSteps):
    """Every `every_n_steps` steps (and at the end) writes ``<dirpath>/step_XXXXXX.png``.

    Args:
        every_n_steps: how often to write a grid.
        max_images: at most this many observed images and chains are shown.
        dirpath: folder for the PNGs (default ``<trainer.default_root_dir>/samples``).
    """

    def __init__(self, every_n_steps: int = 50, max_images: int = 16, dirpath: str | None = None) -> None:
        super().__init__(every_n_steps, "sample_grid")
        if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
            raise ValueError(f"callbacks.sample_grid.max_images must be an integer >= 1, got {max_images!r}")
        self.max_images = max_images
        self.dirpath = dirpath

    @rank_zero_only
    def run(self, trainer: pl.Trainer, pl_module: Any) -> None:
        step = trainer.global_step
        observed = self.last_batch[: self.max_images].detach().float().cpu().clamp(0, 1)
        chains = pl_module.to_images(pl_module.buffer.chains[: self.max_images]).cpu()
        grid = side_by_side(observed, chains)
        publish_grid(trainer, grid, self.folder(trainer)[0], "samples", f"observed | synthesized, step {step}")

    def folder(self, trainer: pl.Trainer) -> tuple[Path, str]:
        return Path(self.dirpath or Path(trainer.default_root_dir) / "samples"), "callbacks.sample_grid.dirpath"
