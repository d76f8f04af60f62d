"""The pixel space of nets learned from scratch, centred on the mean of the reference q(I).

The model of eq. (26) is p(I; w) = exp(f(I; w)) q(I) / Z(w) with the reference distribution
q(I) Gaussian white noise of variance sigma^2 (eq. 2). The chains and the net live in pixel
units (0-255, the units of the paper's Langevin step 0.3 and sigma = 1) minus the mean of q:

    x = 255 * pixels(I) - mean,      q(x) = N(0, sigma^2 Id)

``reference_mean`` chooses that mean:

``grey``
    the constant grey/colour of the Caffe VGG mean pixel (114.8 for grey), as the models on
    VGG filters; q is centred on a flat mid-grey image.
``data``
    the mean of the training images, set once when training starts (``fit``) and saved with
    the model: per pixel for nets whose readout is tied to positions (the mean face of aligned
    faces), per channel otherwise. Then q(I) is the Gaussian closest to the data at w = 0 and
    f(I; w) only has to model how images deviate from their mean, rather than spend its first
    iterations matching the mean intensity against the pull of the prior. Measured on Yale B
    faces (64 px, the paper's 5-layer net, 60 iterations): with ``grey`` the cold-started
    chains stay flat grey images with a stride-3 grid while the top-layer statistics already
    match (gap 0.05); with ``data`` they show eyes, mouth and the lighting of the faces.

Grey nets (one channel) take the channel mean of RGB input; colour nets take BGR, as Caffe.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from frame.nets.vgg import CAFFE

REFERENCE_MEANS = ("grey", "data")
SCALE = 255.0


class PixelSpace(nn.Module):
    """Images (RGB in [0, 1]) <-> the net's input: 255 * pixels - mean of q(I).

    Args:
        channels: 1 (grey) or 3 (colour, BGR order as Caffe).
        reference_mean: ``grey`` (constant) or ``data`` (set by :meth:`fit`).
        size: side of the per-pixel mean image (``data`` with ``per_pixel``).
        per_pixel: the ``data`` mean is an image (True) or one value per channel (False).
    """

    def __init__(self, channels: int = 1, reference_mean: str = "grey", size: int = 1, per_pixel: bool = False) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"model.channels must be 1 (grey) or 3 (colour), got {channels}")
        if reference_mean not in REFERENCE_MEANS:
            raise ValueError(f"model.reference_mean must be one of {REFERENCE_MEANS}, got {reference_mean!r}")
        self.channels = int(channels)
        self.reference_mean = reference_mean
        caffe = torch.tensor(CAFFE.mean).view(1, 3, 1, 1)
        constant = caffe.mean(1, keepdim=True) if channels == 1 else caffe
        side = int(size) if (reference_mean == "data" and per_pixel) else 1
        self.register_buffer("mean", constant.expand(1, self.channels, side, side).clone())
        self.register_buffer("fitted", torch.tensor(reference_mean == "grey"))

    def pixels(self, rgb01: Tensor) -> Tensor:
        """RGB [0, 1] -> the net's channels in 0-255 (grey = channel mean; colour = BGR)."""
        if self.channels == 1:
            grey = rgb01.mean(dim=1, keepdim=True) if rgb01.shape[1] != 1 else rgb01
            return grey * SCALE
        if rgb01.shape[1] == 1:
            rgb01 = rgb01.expand(-1, 3, -1, -1)
        return rgb01.flip(1) * SCALE

    def _mean(self, like: Tensor) -> Tensor:
        if not bool(self.fitted):
            raise RuntimeError(
                "model.reference_mean=data: the mean of the training images is not set yet; it is set when "
                "training starts (PixelSpace.fit) and saved in checkpoints: load a trained checkpoint"
            )
        mean = self.mean.to(device=like.device, dtype=like.dtype)
        if mean.shape[-1] > 1 and tuple(mean.shape[-2:]) != tuple(like.shape[-2:]):
            raise ValueError(
                f"the reference mean is a {mean.shape[-1]}px image but the images are {tuple(like.shape[-2:])}: "
                "resize them to the model's image size"
            )
        return mean

    def to_input(self, rgb01: Tensor) -> Tensor:
        x = self.pixels(rgb01)
        return x - self._mean(x)

    def from_input(self, x: Tensor) -> Tensor:
        """The net's input -> RGB in [0, 1] (not clamped)."""
        pixels = (x + self._mean(x)) / SCALE
        return pixels.expand(-1, 3, -1, -1) if self.channels == 1 else pixels.flip(1)

    def input_bounds(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """Black (0) and white (255) in input space: [1, C, 1, 1], or [1, C, S, S] for a mean image."""
        mean = self._mean(torch.zeros(1, self.channels, *self.mean.shape[-2:], device=device, dtype=dtype))
        return -mean, SCALE - mean

    @torch.no_grad()
    def fit(self, rgb01: Tensor) -> None:
        """Sets the ``data`` reference mean from training images [N, C, H, W] in [0, 1]."""
        if self.reference_mean != "data":
            return
        pixels = self.pixels(rgb01.float()).mean(0, keepdim=True)
        if self.mean.shape[-1] > 1:
            if tuple(pixels.shape[-2:]) != tuple(self.mean.shape[-2:]):
                raise ValueError(
                    f"model.reference_mean=data: the training images are {tuple(pixels.shape[-2:])} but the "
                    f"model is built for {tuple(self.mean.shape[-2:])} (data.image_size)"
                )
        else:
            pixels = pixels.mean(dim=(-2, -1), keepdim=True)
        self.mean.copy_(pixels.to(self.mean))
        self.fitted.fill_(True)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints written before the reference mean was saved (frame <= session 1) used the
        # constant grey: a ``grey`` space keeps its own constant for them.
        if self.reference_mean == "grey":
            for name in ("mean", "fitted"):
                state_dict.setdefault(prefix + name, getattr(self, name).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reference_mean={self.reference_mean!r}, mean_shape={tuple(self.mean.shape)}"
