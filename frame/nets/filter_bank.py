"""The linear filters of the original FRAME models (paper, Section 3 and Fig. 3b).

Three kinds of filter F_k, each a small kernel convolved with the grey image (eq. 1):

- Gabor: a Gaussian envelope times a cosine (even) or sine (odd) wave, at several scales and
  orientations; the envelope is elongated along the bars (1.5 : 1), the wavelength 3 scales;
- DoG: an isotropic difference of Gaussians G_s - G_{1.6 s} (close to a Laplacian of Gaussian);
- delta: the intensity filter I(x) itself (a 1x1 kernel).

Normalisation, as in the FRAME literature: every filter but the delta has zero mean (it does not
see the mean grey level) and unit L1 norm (``norm="l1"``, so a response lies in
[-127.5, 127.5] on 0-255 images) or unit L2 norm (``"l2"``). Kernels are truncated at 2.5
standard deviations of their envelope.

``FilterBank`` is a frozen extractor with the interface the energies use (as
``frame.nets.VGG16Features``): one layer, ``"filters"``, whose K channels are the raw linear
responses [F_k * I](x) on a grey image in 0-255 minus a constant mean (``PixelSpace``).
Textures use circular boundaries (the image on a torus, as the original FRAME code); objects
may use zero padding. The kernels are rebuilt from the constructor's arguments, so a checkpoint
holds only those.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from frame.input_space import PixelSpace

LAYER = "filters"
NORMS = ("l1", "l2")
PADDINGS = ("circular", "zeros", "reflect")
#: envelope elongation along the bars, wavelength in scales, DoG scale ratio, truncation in sds
ELONGATION, WAVELENGTH, DOG_RATIO, TRUNCATE = 1.5, 3.0, 1.6, 2.5


def _grid(half: int) -> tuple[Tensor, Tensor]:
    r = torch.arange(-half, half + 1, dtype=torch.float64)
    return torch.meshgrid(r, r, indexing="ij")  # (y, x)


def normalise(kernel: Tensor, norm: str = "l1", zero_mean: bool = True) -> Tensor:
    """Zero mean (unless the delta), then unit L1 or L2 norm."""
    if norm not in NORMS:
        raise ValueError(f"model.energy.extractor.norm must be one of {NORMS}, got {norm!r}")
    if zero_mean:
        kernel = kernel - kernel.mean()
    scale = kernel.abs().sum() if norm == "l1" else kernel.pow(2).sum().sqrt()
    return kernel / scale


def gabor(scale: float, theta: float, phase: str, norm: str = "l1") -> Tensor:
    """Gabor kernel: the wave runs along angle `theta` (radians), bars across it.

    ``phase="cos"`` is even (a bar), ``"sin"`` odd (an edge).
    """
    half = math.ceil(TRUNCATE * ELONGATION * scale)
    y, x = _grid(half)
    u = x * math.cos(theta) + y * math.sin(theta)  # across the bars
    v = -x * math.sin(theta) + y * math.cos(theta)  # along the bars
    envelope = torch.exp(-(u**2 + (v / ELONGATION) ** 2) / (2 * scale**2))
    wave = 2 * math.pi * u / (WAVELENGTH * scale)
    carrier = torch.cos(wave) if phase == "cos" else torch.sin(wave)
    return normalise(envelope * carrier, norm).float()


def dog(scale: float, norm: str = "l1") -> Tensor:
    """Isotropic difference of Gaussians G_s - G_{1.6 s}, each of unit mass on the support."""
    half = math.ceil(TRUNCATE * DOG_RATIO * scale)
    y, x = _grid(half)
    centre, surround = (torch.exp(-(x**2 + y**2) / (2 * s**2)) for s in (scale, DOG_RATIO * scale))
    return normalise(centre / centre.sum() - surround / surround.sum(), norm).float()


def delta() -> Tensor:
    """The intensity filter: [F * I](x) = I(x)."""
    return torch.ones(1, 1)


def bank_filters(
    scales: Sequence[float] = (1.0, 2.0, 3.0),
    orientations: int = 6,
    dog_scales: Sequence[float] = (1.0, 2.0, 3.0),
    with_delta: bool = True,
    norm: str = "l1",
) -> dict[str, Tensor]:
    """{name: kernel}: Gabor cos/sin per scale and orientation, DoG per scale, the delta."""
    filters: dict[str, Tensor] = {}
    if with_delta:
        filters["delta"] = delta()
    for s in dog_scales:
        filters[f"dog_s{s:g}"] = dog(float(s), norm)
    for s in scales:
        for o in range(int(orientations)):
            degrees = 180.0 * o / orientations
            for phase in ("cos", "sin"):
                filters[f"gabor_s{s:g}_o{degrees:g}_{phase}"] = gabor(float(s), math.radians(degrees), phase, norm)
    return filters


class FilterBank(nn.Module):
    """Frozen linear filters with the extractor interface: one layer, ``"filters"``.

    Args:
        scales: Gabor scales (the envelope's standard deviation across the bars, in pixels).
        orientations: Gabor orientations, equally spaced over 180 degrees.
        dog_scales: DoG centre scales.
        delta: include the intensity filter.
        norm: ``l1`` or ``l2`` (unit norm after removing the mean).
        padding: ``circular`` (textures on a torus), ``zeros`` or ``reflect``.
        filters: keep only these filters, in this order (names as in ``names``); None = all.
        reference_mean: mean of q(I), ``grey`` or ``data`` (the training images' mean grey
            level; ``frame.input_space.PixelSpace``).
    """

    def __init__(
        self,
        scales: Sequence[float] = (1.0, 2.0, 3.0),
        orientations: int = 6,
        dog_scales: Sequence[float] = (1.0, 2.0, 3.0),
        delta: bool = True,
        norm: str = "l1",
        padding: str = "circular",
        filters: Sequence[str] | None = None,
        reference_mean: str = "grey",
    ) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"model.energy.extractor.padding must be one of {PADDINGS}, got {padding!r}")
        bank = bank_filters(scales, orientations, dog_scales, delta, norm)
        if filters is not None:
            unknown = [name for name in filters if name not in bank]
            if unknown:
                raise ValueError(f"unknown filters {unknown}; this bank has: {', '.join(bank)}")
            bank = {name: bank[name] for name in filters}
        if not bank:
            raise ValueError("the filter bank is empty: give at least one scale, dog scale or the delta")
        self.names: tuple[str, ...] = tuple(bank)
        self.layers: tuple[str, ...] = (LAYER,)
        self.padding = padding
        self.input_space = PixelSpace(1, reference_mean)
        # every kernel centred on the largest size S, in bank order
        size = max(k.shape[-1] for k in bank.values())
        padded = [F.pad(k, [(size - k.shape[-1]) // 2] * 4) for k in bank.values()]
        self.register_buffer("weight", torch.stack(padded)[:, None], persistent=False)
        self._spectra: dict[tuple, Tensor] = {}
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> FilterBank:
        return super().train(False)

    @property
    def max_size(self) -> int:
        return self.weight.shape[-1]

    def kernels(self) -> Tensor:
        """All kernels [K, 1, S, S] in bank order, centred on the largest size S."""
        return self.weight

    def spectrum(self, h: int, w: int, like: Tensor) -> Tensor:
        """rfft2 of the flipped kernels on an h x w torus, centred at (0, 0) (cached per size)."""
        key = (h, w, like.device, like.dtype)
        if key not in self._spectra:
            k = self.weight[:, 0].flip(-2, -1).to(device=like.device, dtype=like.dtype)
            half = k.shape[-1] // 2
            canvas = F.pad(k, (0, w - k.shape[-1], 0, h - k.shape[-2])).roll((-half, -half), (-2, -1))
            self._spectra = {key: torch.fft.rfft2(canvas)}  # one size at a time
        return self._spectra[key]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Grey images in input space [B, 1, H, W] -> {"filters": [B, K, H, W]}, same size.

        The cross-correlation of ``conv2d`` computed by FFT (exact on the torus; other borders
        pad the image by half the largest kernel and crop), 9x faster than ``conv2d`` at 128 px.
        """
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"the filter bank takes grey images [B, 1, H, W], got {tuple(x.shape)}")
        x = x.float().contiguous()
        p = 0 if self.padding == "circular" else self.max_size // 2
        if p:
            x = F.pad(x, (p, p, p, p), mode="constant" if self.padding == "zeros" else self.padding)
        h, w = x.shape[-2:]
        out = torch.fft.irfft2(torch.fft.rfft2(x) * self.spectrum(h, w, x), s=(h, w))
        return {LAYER: out[..., p : h - p, p : w - p] if p else out}

    def channels(self, layer: str = LAYER) -> int:
        self._check_layer(layer)
        return len(self.names)

    def feature_shape(self, layer: str, h: int, w: int) -> tuple[int, int, int]:
        self._check_layer(layer)
        return len(self.names), h, w

    def check_image_size(self, size: int, key: str) -> None:
        if size < self.max_size:
            raise ValueError(f"{key}={size} is smaller than the largest filter ({self.max_size} px) of the bank")

    def _check_layer(self, layer: str) -> None:
        if layer != LAYER:
            raise ValueError(f"the filter bank has one layer, {LAYER!r}, not {layer!r}")

    def extra_repr(self) -> str:
        return f"{len(self.names)} filters, padding={self.padding!r}"


def kernel_grid(bank: FilterBank) -> Tensor:
    """The kernels as [K, 1, S, S] images in [0, 1], 0.5 = zero (the paper's Fig. 3b)."""
    k = bank.kernels()
    peak = k.flatten(1).abs().amax(1).clamp_min(1e-12)[:, None, None, None]
    return 0.5 + 0.5 * k / peak
