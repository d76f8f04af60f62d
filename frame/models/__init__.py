"""The LightningModule running Algorithm 1; a model is chosen by its energy (``frame.energies``)."""

from frame.models.base import FrameModel

__all__ = ["FrameModel"]
