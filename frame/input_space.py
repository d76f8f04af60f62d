"""The input space: the one place that knows how images become what the chains and nets hold.

Images (what users give and see) are float tensors in [0, 1], RGB ``[B, 3, H, W]``, or grey
``[B, 1, H, W]``. The chains of Algorithm 1 and the networks live in an *input space* ``x``:

``NetworkSpace``
    an affine map fixed by a pretrained network: ``x = (order(images) * scale - mean) / std``.
    ``CAFFE`` is the authors' MatConvNet/Caffe VGG-16: BGR, 0-255, minus the BGR mean pixel,
    so ``x = 0`` is the mean image and sigma = 1, delta = 0.3 are in grey levels.
    ``TORCHVISION`` is RGB in [0, 1] normalised by the ImageNet mean/std.
``PixelSpace``
    nets learned from scratch (eq. 25-26): 0-255 minus the mean of the reference q(I) of
    eq. (2), grey or colour (BGR), the mean a constant grey or the mean training image.

Every space has one pair of verbs, ``to_input(images)`` and ``to_images(x)`` (RGB, not
clamped), the ``bounds`` of black and white in ``x``, and ``channels`` (the chains' channel
count, so a grey net has grey chains).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SCALE = 255.0
#: BGR mean pixel of the Caffe/MatConvNet VGG-16 (the authors' 0-255 units).
CAFFE_MEAN = (103.939, 116.779, 123.68)
REFERENCE_MEANS = ("grey", "data")


class InputSpace(nn.Module):
    """Images in [0, 1] <-> the input space ``x`` of the chains and the network."""

    #: channels of ``x`` (and of the chains): 1 grey, 3 colour
    channels: int = 3

    def to_input(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def to_images(self, x: Tensor) -> Tensor:
        """``x`` -> RGB images in [0, 1], not clamped."""
        raise NotImplementedError

    def bounds(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """Black (0) and white (1) images in ``x``, broadcastable to the chains."""
        raise NotImplementedError

    def to_network(self, x: Tensor) -> Tensor:
        """``x`` -> what the network takes (grey chains replicated for a colour net)."""
        return x

    def fit(self, images: Tensor) -> None:
        """Sets what the space takes from the training images (nothing unless it says so)."""

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` has set what the space needs (always, unless it takes something)."""
        return True


def _rgb(images: Tensor) -> Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class NetworkSpace(InputSpace):
    """``x = (order(images) * scale - mean) / std``, the input of a pretrained network.

    With ``grey``, the chains hold one channel, the grey level in the same units
    (``x = (grey * scale - mean_grey) / std_grey``, the means and stds averaged over channels),
    and ``to_network`` gives the colour net the grey image in all three channels: grey data
    gets grey chains, which cannot drift into colour.

    Args:
        name: ``caffe`` or ``torchvision`` (shown in reprs and errors).
        bgr: the network takes BGR (Caffe) instead of RGB.
        scale: 255 (Caffe) or 1 (torchvision).
        mean, std: per channel, in the network's channel order.
        grey: one-channel chains for grey images.

    ``channels_last`` (attribute, default True; ``FrameModel`` sets it to its sampler's option):
    the lay-out of the three-channel network input made from grey chains. A one-channel tensor
    has no lay-out of its own, so without it the net would run grey chains in NCHW, where
    bf16 max-pooling on a CPU is ~10x slower than channels-last.
    """

    channels_last = True

    def __init__(
        self, name: str, bgr: bool, scale: float, mean: tuple[float, ...], std: tuple[float, ...] = (1.0, 1.0, 1.0),
        grey: bool = False,
    ) -> None:
        super().__init__()
        self.name, self.bgr, self.scale = name, bool(bgr), float(scale)
        self.mean, self.std = tuple(mean), tuple(std)
        self.grey = bool(grey)
        self.channels = 1 if self.grey else 3

    def _stats(self, x: Tensor, channels: int) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        if channels == 1:
            return mean.mean(1, keepdim=True), std.mean(1, keepdim=True)
        return mean, std

    def _order(self, x: Tensor) -> Tensor:  # RGB <-> BGR is its own inverse
        return x.flip(1) if self.bgr and x.shape[1] == 3 else x

    def to_input(self, images: Tensor) -> Tensor:
        if self.grey and images.shape[1] == 3:
            images = images.mean(1, keepdim=True)
        elif not self.grey:
            images = _rgb(images)
        mean, std = self._stats(images, self.channels)
        return (self._order(images) * self.scale - mean) / std

    def to_images(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x, self.channels)
        return _rgb(self._order((x * std + mean) / self.scale))

    def to_network(self, x: Tensor) -> Tensor:
        if not self.grey:
            return x
        grey_mean, grey_std = self._stats(x, 1)
        mean, std = self._stats(x, 3)
        rgb = (x * grey_std + grey_mean - mean) / std
        return rgb.contiguous(memory_format=torch.channels_last) if self.channels_last and rgb.dim() == 4 else rgb

    def bounds(self, device=None, dtype=None) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(1, self.channels, 1, 1, device=device, dtype=dtype or torch.get_default_dtype())
        return self.to_input(zeros), self.to_input(zeros + 1)

    def extra_repr(self) -> str:
        return f"{self.name!r}, grey={self.grey}"


def caffe_space(grey: bool = False) -> NetworkSpace:
    """Caffe / MatConvNet VGG-16: BGR, 0-255, minus the BGR mean pixel, no std."""
    return NetworkSpace("caffe", bgr=True, scale=SCALE, mean=CAFFE_MEAN, grey=grey)


def torchvision_space(grey: bool = False) -> NetworkSpace:
    """torchvision: RGB, [0, 1], ImageNet mean/std."""
    return NetworkSpace("torchvision", bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), grey=grey)


NETWORK_SPACES = {"caffe": caffe_space, "torchvision": torchvision_space}


def network_space(source: str, name: str | None = None, grey: bool = False) -> NetworkSpace:
    """The space named ``name`` if given, else torchvision's for ``source="torchvision"``, Caffe's otherwise."""
    name = name or ("torchvision" if source == "torchvision" else "caffe")
    if name not in NETWORK_SPACES:
        raise ValueError(f"unknown input space {name!r}; valid: {', '.join(NETWORK_SPACES)}")
    return NETWORK_SPACES[name](grey=grey)


class PixelSpace(InputSpace):
    """Nets learned from scratch: ``x = 255 * pixels(images) - mean of q(I)`` (eq. 26).

    ``reference_mean`` chooses the mean of the reference q(I) = N(mean, sigma^2):
    ``grey``, the constant grey/colour of the Caffe mean pixel, or ``data``, the mean training
    image set by :meth:`fit` and saved with the model (per pixel for nets whose readout is tied
    to positions, per channel otherwise), so that f(I; w) models how images deviate from it.

    Args:
        channels: 1 (grey) or 3 (colour, BGR as Caffe).
        reference_mean: ``grey`` or ``data``.
        size: side of the per-pixel mean image (``data`` with ``per_pixel``).
        per_pixel: the ``data`` mean is an image (True) or one value per channel (False).
    """

    def __init__(self, channels: int = 1, reference_mean: str = "grey", size: int = 1, per_pixel: bool = False) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"model.energy.channels must be 1 (grey) or 3 (colour), got {channels}")
        if reference_mean not in REFERENCE_MEANS:
            raise ValueError(f"model.energy.reference_mean must be one of {REFERENCE_MEANS}, got {reference_mean!r}")
        self.channels = int(channels)
        self.reference_mean = reference_mean
        caffe = torch.tensor(CAFFE_MEAN).view(1, 3, 1, 1)
        constant = caffe.mean(1, keepdim=True) if channels == 1 else caffe
        side = int(size) if (reference_mean == "data" and per_pixel) else 1
        self.register_buffer("mean", constant.expand(1, self.channels, side, side).clone())
        self.register_buffer("fitted", torch.tensor(reference_mean == "grey"))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def pixels(self, images: Tensor) -> Tensor:
        """Images -> the net's channels in 0-255 (grey = channel mean; colour = BGR)."""
        if self.channels == 1:
            grey = images.mean(dim=1, keepdim=True) if images.shape[1] != 1 else images
            return grey * SCALE
        return _rgb(images).flip(1) * SCALE

    def _mean(self, like: Tensor) -> Tensor:
        if not bool(self.fitted):
            raise RuntimeError(
                "model.energy.reference_mean=data: the mean of the training images is not set yet; it is set "
                "when training starts and saved in checkpoints: load a trained checkpoint"
            )
        mean = self.mean.to(device=like.device, dtype=like.dtype)
        if mean.shape[-1] > 1 and tuple(mean.shape[-2:]) != tuple(like.shape[-2:]):
            raise ValueError(
                f"the reference mean is a {mean.shape[-1]}px image but the images are {tuple(like.shape[-2:])}: "
                "resize them to the model's image size"
            )
        return mean

    def to_input(self, images: Tensor) -> Tensor:
        x = self.pixels(images)
        return x - self._mean(x)

    def to_images(self, x: Tensor) -> Tensor:
        pixels = (x + self._mean(x)) / SCALE
        return pixels.expand(-1, 3, -1, -1) if self.channels == 1 else pixels.flip(1)

    def bounds(self, device=None, dtype=None) -> tuple[Tensor, Tensor]:
        """[1, C, 1, 1], or [1, C, S, S] for a mean image."""
        mean = self._mean(torch.zeros(1, self.channels, *self.mean.shape[-2:], device=device, dtype=dtype))
        return -mean, SCALE - mean

    @torch.no_grad()
    def fit(self, images: Tensor) -> None:
        """Sets the ``data`` reference mean from training images [N, C, H, W] in [0, 1]."""
        if self.reference_mean != "data":
            return
        pixels = self.pixels(images.float()).mean(0, keepdim=True)
        if self.mean.shape[-1] > 1:
            if tuple(pixels.shape[-2:]) != tuple(self.mean.shape[-2:]):
                raise ValueError(
                    f"model.energy.reference_mean=data: the training images are {tuple(pixels.shape[-2:])} but "
                    f"the model is built for {tuple(self.mean.shape[-2:])} (data.image_size)"
                )
        else:
            pixels = pixels.mean(dim=(-2, -1), keepdim=True)
        self.mean.copy_(pixels.to(self.mean))
        self.fitted.fill_(True)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints written before the reference mean was saved used the constant grey.
        if self.reference_mean == "grey":
            for name in ("mean", "fitted"):
                state_dict.setdefault(prefix + name, getattr(self, name).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reference_mean={self.reference_mean!r}, mean_shape={tuple(self.mean.shape)}"
