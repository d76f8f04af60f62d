"""The non-stationary deep FRAME model for aligned objects (eq. 9, Experiment 1, Fig. 5)."""

from __future__ import annotations

from typing import Any

from torch import nn

from frame.energies import NonStationaryEnergy
from frame.models.base import FrameModel


class NonStationaryFrame(FrameModel):
    """Eq. (9) on a frozen filter bank, learned by Algorithm 1 with eq. (13).

    Args:
        extractor: frozen filters, e.g. ``VGG16Features(layers=["conv3_3"])``.
        image_size: side of the aligned training images; the chains have the same size.
        **kwargs: passed to ``FrameModel`` (sampler, n_chains, chains, optimizer, ...).
    """

    def __init__(self, extractor: nn.Module, image_size: int = 64, **kwargs: Any) -> None:
        canvas = kwargs.pop("canvas_size", image_size)
        if canvas != image_size:
            raise ValueError(
                f"model.canvas_size ({canvas}) must equal data.image_size ({image_size}) for the "
                "non-stationary model: its weights w_(k,x) are tied to positions"
            )
        extractor.check_image_size(image_size, "data.image_size")
        super().__init__(energy=NonStationaryEnergy(extractor, image_size), canvas_size=image_size, **kwargs)
