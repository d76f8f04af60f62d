"""Multigrid energies: one generative ConvNet per image scale (Gao, Lu, Zhou, Zhu, Wu, "Learning
generative ConvNets via multi-grid modeling and sampling", CVPR 2018).

An image I of the finest scale (e.g. 64 x 64) has a pyramid I_s = B_s(I), s = 1..S (e.g. 4, 16,
64 px), where B_s takes the means of its square blocks (B_S is the identity). Every scale has its
own model of eq. (26),

    p_s(I_s; w_s) = exp(f_s(I_s; w_s)) q_s(I_s) / Z_s(w_s),

with f_s a net learned from scratch (``ScratchEnergy``, eq. 25): small ones at the coarse scales,
the Section 9 face net at the finest. The observed images of scale s are the block means B_s of
the training images; its synthesized images are the chains of scale s, which the model samples
coarse to fine (``frame.coarse_to_fine.CoarseToFineSampler``). Each scale learns by eq. (27) on its own
observed and synthesized images, so the learning direction of w_s is

    mean_obs df_s(B_s I)/dw_s - mean_syn df_s(I~_s)/dw_s,

and this energy's ``layer_energies`` are the f_s, one "layer" per scale: the shared
``Energy.contrastive_loss`` (the sum over layers) is then the sum of the scales' losses of
eq. (27), and no scale's weights see another scale's images. ``forward`` on an image of the
finest scale is sum_s f_s(B_s I), the energy of the product of the scales' models.

Every scale has its own input space (its reference q_s, with the mean image at its own
resolution for ``reference_mean=data``); images move between scales through the images they
show (``to_images`` / ``to_input``), so the block means of the finest chains' pixels are the
coarse chains' pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from frame.energies.base import Energy
from frame.energies.scratch import ScratchEnergy
from frame.input_space import InputSpace

#: how a chain of one scale becomes the start of the next (``F.interpolate`` modes):
#: ``nearest`` repeats each pixel over its block (the inverse of the block mean), ``bilinear``
#: interpolates between block centres
UPSAMPLING = ("nearest", "bilinear")
Pyramid = Sequence[Tensor]


class MultigridEnergy(Energy):
    """f_s(I_s; w_s) for every scale s, coarse first; the finest is the images' own size.

    Args:
        scales: one ``ScratchEnergy`` per scale, coarse to fine; their ``image_size`` must grow
            and each must divide the next (block means over whole blocks), and their channels
            must agree.
        upsample: ``nearest`` or ``bilinear``, how a chain of one scale is enlarged into the
            start of the next (``UPSAMPLING``).
    """

    def __init__(self, scales: Sequence[ScratchEnergy], upsample: str = "nearest") -> None:
        super().__init__()
        scales = list(scales)
        if not scales:
            raise ValueError("model.energy.scales is empty: give at least one scale's net")
        if upsample not in UPSAMPLING:
            raise ValueError(f"model.energy.upsample must be one of {UPSAMPLING}, got {upsample!r}")
        for i, net in enumerate(scales):
            if not isinstance(net, ScratchEnergy):
                raise ValueError(f"model.energy.scales[{i}] must build a frame.energies.ScratchEnergy, got {type(net).__name__}")
        sizes = [net.image_size for net in scales]
        if any(b <= a or b % a for a, b in zip(sizes, sizes[1:])):
            raise ValueError(
                f"model.energy.scales: the image sizes {sizes} must grow coarse to fine, each dividing the next"
            )
        if len({net.channels for net in scales}) > 1:
            raise ValueError(f"model.energy.scales: every scale must have the same channels, got {[n.channels for n in scales]}")
        self.scales = nn.ModuleList(scales)
        self.sizes = sizes
        self.upsample = upsample
        self.names = [f"{size}px" for size in sizes]
        finest = scales[-1]
        self.image_size, self.channels, self.positional = finest.image_size, finest.channels, finest.positional

    @property
    def input_space(self) -> InputSpace:  # the finest scale's: the chains and images the model shows
        return self.scales[-1].input_space

    def check_image_size(self, size: int) -> None:
        if size != self.image_size:
            raise ValueError(f"data.image_size ({size}) must equal the finest scale of model.energy.scales ({self.image_size})")

    # -- the pyramid -------------------------------------------------------------------------------
    def pyramid(self, x: Tensor) -> list[Tensor]:
        """B_s(x) for every scale, coarse first: the block means of images `x` of the finest scale
        (its input space), each in its own scale's input space; the finest is `x` itself."""
        images = self.input_space.to_images(x.float())
        return [
            net.input_space.to_input(F.adaptive_avg_pool2d(images, net.image_size)).to(x.dtype) for net in self.scales[:-1]
        ] + [x]

    def mask_pyramid(self, mask: Tensor) -> list[Tensor]:
        """The pixels that move at every scale for a mask of the finest (True = moves): a coarse
        pixel moves when any pixel of its block does, so each scale keeps exactly the pixels it
        knows at its own resolution."""
        m = mask.float()
        return [F.adaptive_max_pool2d(m, size) > 0 for size in self.sizes[:-1]] + [mask.bool()]

    def enlarge(self, x: Tensor, scale: int) -> Tensor:
        """The chains `x` of scale ``scale - 1`` as images of scale ``scale`` (its input space)."""
        coarse, fine = self.scales[scale - 1], self.scales[scale]
        images = coarse.input_space.to_images(x.float())
        size = (fine.image_size, fine.image_size)
        big = F.interpolate(images, size=size, mode=self.upsample, **({} if self.upsample == "nearest" else {"align_corners": False}))
        return fine.input_space.to_input(big)

    # -- the Energy interface ------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, observed: Tensor) -> None:
        """Fits every coarse scale's reference mean (``reference_mean=data``) on the block means
        of the observed images (finest input space, already fitted)."""
        images = self.input_space.to_images(observed.float())
        for net in self.scales[:-1]:
            net.input_space.fit(F.adaptive_avg_pool2d(images, net.image_size))

    @property
    def is_fitted(self) -> bool:
        return all(net.input_space.is_fitted for net in self.scales)

    def features(self, x: Tensor | Pyramid) -> dict[str, Tensor]:
        """Every scale's features, keyed ``<scale>/<key>``: of the pyramid of `x` (observed
        images of the finest scale), or of one tensor per scale (the chains of every scale)."""
        levels = self.pyramid(x) if isinstance(x, Tensor) else list(x)
        if len(levels) != len(self.scales):
            raise ValueError(f"expected one tensor per scale ({len(self.scales)}), got {len(levels)}")
        return {
            f"{name}/{key}": value
            for name, net, level in zip(self.names, self.scales, levels)
            for key, value in net.features(level).items()
        }

    def scale_features(self, feats: dict[str, Tensor], name: str) -> dict[str, Tensor]:
        """The features of one scale, under the keys its net uses."""
        prefix = f"{name}/"
        return {key[len(prefix):]: value for key, value in feats.items() if key.startswith(prefix)}

    def layer_energies(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        """f_s per image, one entry per scale (the scale's own layers summed)."""
        out = {}
        for name, net in zip(self.names, self.scales):
            energies = net.layer_energies(self.scale_features(feats, name))
            out[name] = torch.stack(list(energies.values())).sum(0)
        return out

    def statistics(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for name, net in zip(self.names, self.scales):
            for key, value in net.statistics(self.scale_features(feats, name)).items():
                out[f"{name}/{key}"] = value
        return out

    def gradient_scale(self, layer: str, feats: dict[str, Tensor]) -> float:
        net = self.scales[self.names.index(layer)]
        return net.gradient_scale("f", self.scale_features(feats, layer))

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, upsample={self.upsample!r}"
