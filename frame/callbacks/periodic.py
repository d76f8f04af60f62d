"""The shape every reporting callback shares: act every N training steps, and once at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch import Tensor

from frame.outputs import check_folder


class EveryNSteps(pl.Callback):
    """Calls ``run(trainer, pl_module)`` every ``every_n_steps`` steps and after the last step.

    Args:
        every_n_steps: how often (>= 1).
        key: the callback's config key, for the error message.
    """

    def __init__(self, every_n_steps: int, key: str) -> None:
        if int(every_n_steps) != every_n_steps or every_n_steps < 1:
            raise ValueError(f"callbacks.{key}.every_n_steps must be an integer >= 1, got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        #: the last training batch (observed images in [0, 1]), for the pictures
        self.last_batch: Tensor | None = None
        self.last_step = -1
        #: the logger row of the metrics of the step ``run`` reports on (Lightning writes a step's
        #: metrics under ``global_step - 1``; after the last step, a row of its own)
        self.row = 0

    def run(self, trainer: pl.Trainer, pl_module: Any) -> None:
        raise NotImplementedError

    def folder(self, trainer: pl.Trainer) -> tuple[Path, str] | None:
        """The folder the callback writes to and its config key (None: it writes no file)."""
        return None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """A folder that cannot be written fails here, before the first step (nothing is created)."""
        if trainer.is_global_zero and (found := self.folder(trainer)) is not None:
            check_folder(*found)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Tensor, batch_idx: int) -> None:
        self.last_batch = batch
        if trainer.global_step % self.every_n_steps == 0:
            self.row = trainer.global_step - 1
            self.run(trainer, pl_module)
            self.last_step = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.last_batch is not None and self.last_step != trainer.global_step:
            self.row = trainer.global_step
            self.run(trainer, pl_module)
            self.last_step = trainer.global_step
