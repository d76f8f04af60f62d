"""The generative ConvNet: a new layer of J learned filters on frozen VGG features (Section 7).

On top of the frozen filter responses [F_k * I] of one VGG tap (optionally local-max-pooled)
the model learns J filters of size s x s over all K channels (eq. 17),

    [F_j * I](y) = h( sum_{k,x} w^(j)_{k,x} [F_k * I](y + x) + b_j ),      h = ReLU,

and its energy is the sum of their responses over all positions (eq. 20),

    f(I; w) = sum_j sum_y [F_j * I](y).

The learning gradient is eq. (21): the observed minus the synthesized mean of
sum_y delta_{j,y}(I) [F_k * I](y + x), where delta_{j,y}(I) = 1[pre-activation > 0] is the
binary detector of eq. (22) (the hard E-step of the EM reading, Section 7.3). Autograd of
``contrastive_loss`` gives exactly that; ``gradient_scale`` divides by the number of positions
|D| of the response map so the learning rate does not depend on the image size.

The statistic compared in the logs (``train/gap_rel``) is the network's own top-layer
statistic: per filter j, the spatial mean of its rectified response, H_j(I) = f_j(I) / |D|.
Because ReLU is positively homogeneous, f_j = <theta_j, df_j/dtheta_j> for theta_j = (w^(j), b_j),
so H_j is a fixed linear function of the statistics that eq. (21) matches: at a fixed point of
learning its observed and synthesized means agree, like the statistics of eq. (13)/(14).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from frame.energies.base import Energy


def learned_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, init_std: float) -> nn.Conv2d:
    """A conv layer initialised as the authors' code: weights N(0, init_std^2), biases 0."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
    with torch.no_grad():
        conv.weight.normal_(0.0, init_std)
        conv.bias.zero_()
    return conv


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of a conv/pool on a map of side `size` (floor rounding, as PyTorch)."""
    return (size + 2 * padding - kernel) // stride + 1


class GConvNetEnergy(Energy):
    """Eq. (20) with (17): J learned filters on one tap of a frozen extractor.

    Args:
        extractor: frozen filter bank (``frame.nets.VGG16Features``) tapping one layer.
        n_filters: J, the number of learned filters (10 scenery, 20 sunflower/egret).
        kernel_size: s, the side of each filter (11 scenery, 7 sunflower/egret).
        stride: stride of the learned filters.
        padding: zero padding of the tap's maps before the learned filters (default
            kernel_size // 2: the maps keep their size; 0: every filter position sees a full
            window of responses). Zero is "no response" for post-ReLU maps.
        pool_size: side of the local max pooling applied to the tap before the learned
            filters (0 = none, as the scenery experiment; 2 = VGG's 2x2 pooling).
        pool_stride: its stride (default: ``pool_size``).
        init_std: standard deviation of the initial weights (the authors' N(0, 0.01^2)).
        layer: the extractor tap to build on (default: its only / deepest tap).
    """

    def __init__(
        self,
        extractor: nn.Module,
        n_filters: int = 20,
        kernel_size: int = 7,
        stride: int = 1,
        padding: int | None = None,
        pool_size: int = 0,
        pool_stride: int | None = None,
        init_std: float = 0.01,
        layer: str | None = None,
    ) -> None:
        super().__init__()
        padding = int(kernel_size) // 2 if padding is None else padding
        for key, value, low in (("n_filters", n_filters, 1), ("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                ("padding", padding, 0), ("pool_size", pool_size, 0)):
            if int(value) != value or value < low:
                raise ValueError(f"model.energy.{key} must be an integer >= {low}, got {value}")
        layers = tuple(extractor.layers)
        self.layer = layer or layers[-1]
        if self.layer not in layers:
            raise ValueError(f"model.energy.layer={self.layer!r} is not a tap of the extractor (taps: {', '.join(layers)})")
        self.extractor = extractor
        self.input_space = extractor.input_space
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        self.pool_size = int(pool_size)
        self.pool_stride = int(pool_stride or pool_size or 1)
        self.pool = nn.MaxPool2d(self.pool_size, self.pool_stride) if self.pool_size > 1 else nn.Identity()
        self.filters = learned_conv(extractor.channels(self.layer), int(n_filters), self.kernel_size,
                                    self.stride, self.padding, init_std)

    @property
    def n_filters(self) -> int:
        return self.filters.out_channels

    def check_image_size(self, size: int) -> None:
        self.extractor.check_image_size(size, "data.image_size")

    # -- the network ----------------------------------------------------------------------------
    def features(self, x: Tensor) -> dict[str, Tensor]:
        """The frozen part: the (pooled) responses [F_k * I] of the tap, computed once per batch."""
        bottom = self.pool(self.extractor(x)[self.layer])
        side = min(bottom.shape[-2:]) + 2 * self.padding
        if side < self.kernel_size:
            raise ValueError(
                f"the {self.layer} maps are {tuple(bottom.shape[-2:])} (after pooling), smaller than the "
                f"{self.kernel_size}x{self.kernel_size} learned filters: raise data.image_size or lower model.energy.kernel_size"
            )
        return {self.layer: bottom}

    def pre_activations(self, feats: dict[str, Tensor]) -> Tensor:
        """sum_{k,x} w^(j)_{k,x} [F_k * I](y + x) + b_j for every filter j and position y, [B, J, h, w]."""
        # fp32 outside autocast (the loss), bf16 under the sampler's autocast
        return self.filters(feats[self.layer].float())

    def responses(self, feats: dict[str, Tensor]) -> Tensor:
        """[F_j * I](y) of eq. (17), [B, J, h, w]."""
        return torch.relu(self.pre_activations(feats))

    @torch.no_grad()
    def detector_maps(self, x: Tensor) -> Tensor:
        """delta_{j,y}(I) of eq. (22): 1 where filter j's pre-activation is > 0, [B, J, h, w] bool."""
        return self.pre_activations(self.features(x)) > 0

    # -- the Energy interface --------------------------------------------------------------------
    def layer_energies(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"gconv": self.responses(feats).float().sum(dim=(1, 2, 3))}

    def statistics(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"gconv": self.responses(feats).float().mean(dim=(-2, -1))}

    def gradient_scale(self, layer: str, feats: dict[str, Tensor]) -> float:
        h, w = feats[self.layer].shape[-2:]
        return 1.0 / (conv_out(h, self.kernel_size, self.stride, self.padding) * conv_out(w, self.kernel_size, self.stride, self.padding))

    def extra_repr(self) -> str:
        return (f"layer={self.layer!r}, n_filters={self.n_filters}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, pool_size={self.pool_size}")
