"""The LightningModule running Algorithm 1; a model is chosen by its energy (``frame.energies``)
and its sampler (``frame.sampling``, ``frame.coarse_to_fine``)."""

from frame.models.base import FrameModel

__all__ = ["FrameModel"]
