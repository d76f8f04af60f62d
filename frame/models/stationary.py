"""The stationary deep FRAME model for textures (eq. 10, Experiment 2, Fig. 6 and 8)."""

from __future__ import annotations

from typing import Any

from torch import nn

from frame.energies import StationaryEnergy
from frame.models.base import FrameModel


class StationaryFrame(FrameModel):
    """Eq. (10) on a frozen filter bank, learned by Algorithm 1 with eq. (14).

    One texture image, or several for a hybrid texture (their pooled statistics are averaged).
    The canvas of the chains (``canvas_size``) may be larger than the observed image.

    Args:
        extractor: frozen filters, e.g. ``VGG16Features(layers=["conv1_2", "conv2_2", ...])``.
        image_size: side of the observed texture image(s).
        canvas_size: side of the synthesized images (defaults to ``image_size``).
        **kwargs: passed to ``FrameModel``.
    """

    def __init__(self, extractor: nn.Module, image_size: int = 64, canvas_size: int | None = None, **kwargs: Any) -> None:
        canvas = image_size if canvas_size is None else canvas_size
        if canvas < image_size:
            raise ValueError(
                f"model.canvas_size ({canvas}) is smaller than data.image_size ({image_size}): the "
                "synthesized texture canvas must be at least as large as the observed image"
            )
        extractor.check_image_size(image_size, "data.image_size")
        super().__init__(energy=StationaryEnergy(extractor), canvas_size=canvas, **kwargs)
