"""The generative ConvNet: J learned filters on frozen VGG features (eq. 17, 20; Fig. 10-11)."""

from __future__ import annotations

from typing import Any

from torch import nn

from frame.callbacks.detectors import DetectorMaps
from frame.energies.gconvnet import GConvNetEnergy
from frame.models.base import FrameModel, split_options


class GConvNetFrame(FrameModel):
    """Eq. (20) with (17) on a frozen filter bank, learned by Algorithm 1 with eq. (21).

    The energy is stationary (filters slide over all positions), so it learns from
    non-aligned images and the canvas may be larger than the training images.

    Args:
        extractor: frozen filters, e.g. ``VGG16Features(layers=["conv3_3"])``.
        image_size: side of the training images; canvas_size: side of the chains (default: the same).
        detectors: keyword arguments of ``frame.callbacks.DetectorMaps`` (logs the detector maps
            of eq. 22 and each filter's activation frequency), or ``None`` to log none.
        **kwargs: the learned layer's options (n_filters, kernel_size, stride, padding, pool_size,
            pool_stride, init_std, layer: see ``frame.energies.gconvnet.GConvNetEnergy``) and
            ``FrameModel``'s (sampler, n_chains, chains, optimizer, ...).
    """

    def __init__(
        self,
        extractor: nn.Module,
        image_size: int = 64,
        canvas_size: int | None = None,
        detectors: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("lr_scaling", "none") != "none":
            raise ValueError(
                "model.lr_scaling=obs_variance preconditions the linear weights of deep FRAME (eq. 9/10); "
                "learned filters take their per-layer normalisation from the optimizer (e.g. Adam): use none"
            )
        energy_options, kwargs = split_options(GConvNetEnergy, kwargs)
        energy = GConvNetEnergy(extractor, **energy_options)
        super().__init__(energy=energy, canvas_size=canvas_size or image_size, **kwargs)
        self.detectors = dict(detectors) if detectors is not None else None

    def configure_callbacks(self) -> list:
        return [DetectorMaps(**self.detectors)] if self.detectors is not None else []
