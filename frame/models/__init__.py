"""The LightningModule running Algorithm 1; a model is chosen by its energy (``frame.energies``)."""

from frame.models.base import FrameModel
from frame.models.multigrid import MultigridModel

__all__ = ["FrameModel", "MultigridModel"]
