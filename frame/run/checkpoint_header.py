"""What a run writes into each checkpoint beside Lightning's own: the ``frame`` header.

The header holds the format (``frame.run.checkpoints.FORMAT``, which ``upgrade`` reads back),
the energy's class and the self-contained config the model was built from
(``frame.run.build.build_model``): enough for the commands to rebuild the model from the file
alone (``frame.run.checkpoints.load_model``). ``frame.run.fit`` gives this callback to every run.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from frame.run.checkpoints import FORMAT


def header(model: pl.LightningModule) -> dict[str, Any]:
    return {"format": FORMAT, "energy": type(model.energy).__name__, "model_config": model.model_config}


class CheckpointHeader(Callback):
    """Writes the ``frame`` header into every checkpoint of the run."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["frame"] = header(pl_module)
