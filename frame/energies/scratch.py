"""The multi-layer generative ConvNet learned from scratch (Section 9, eq. 25-27).

Every layer is learned, none is pretrained:

    h_0 = I,   h_l = ReLU(W_l * h_{l-1} + b_l)   (l = 1..L, strided convolutions, eq. 17)
    f(I; w) = readout(h_L)                                                        (eq. 25)

with the readouts

    dense       f = sum_{k,x} w_{k,x} h_{L,k}(x) + b   (fully connected to a scalar: the face net)
    stationary  f = sum_k w_k sum_x h_{L,k}(x) + b|D|  (a 1x1 linear filter summed over positions:
                the authors' texture nets)
    sum         f = sum_k sum_x h_{L,k}(x)               (eq. 20: the top layer's rectified
                responses summed, no readout weights)

and p(I; w) = exp(f(I; w)) q(I) / Z(w) (eq. 26). The learning gradient (eq. 27) is the observed
minus the synthesized mean of df/dw, which autograd gives from ``contrastive_loss``.

Input space (``frame.input_space.PixelSpace``). The chains live in pixel units, 0-255,
minus the mean of the reference distribution q(I): the Caffe VGG mean pixel (``grey``; 114.8
for grey images), i.e. the units of the VGG-based models and of the authors' MatConvNet code,
or the mean training image (``data``, the default of the face presets). The paper's Section 9 settings (Langevin step
delta = 0.3, reference sigma = 1) are stated in those units: in [0, 1] or [-1, 1] a noise of
0.3 per step would be a third of the whole grey range and drown the image, while in 0-255 units
the prior ||I||^2 / 2 sigma^2 and the noise are mild next to df/dI of a learned net. Grey images
(faces) use one channel, so the chains do not drift into colour.

Layer-by-layer growth (Section 7.3): ``frozen_layers`` keeps the lowest layers fixed (their
responses are computed once per batch in ``features``, like a pretrained filter bank), and
``load_layers`` copies lower layers from a checkpoint of a shallower net.

The statistic compared in the logs (``train/gap_rel``) is the network's own top-layer
statistic: for the dense readout, the top responses h_L(I) themselves (df/dw of the readout,
the analogue of eq. 13); for the stationary and sum readouts, their spatial means per channel
(eq. 14). At a fixed point of learning their observed and synthesized means agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from frame.energies.base import Energy
from frame.energies.gconvnet import conv_out, learned_conv
from frame.input_space import PixelSpace

READOUTS = ("dense", "stationary", "sum")

#: The rectification h of eq. (17): ReLU in the paper; smooth alternatives give the Langevin
#: dynamics a smooth df/dI (a ReLU net's f is piecewise linear in I).
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "leaky_relu": partial(F.leaky_relu, negative_slope=0.2),
    "elu": F.elu,
    "softplus": F.softplus,
    "silu": F.silu,
}

#: The paper's 5-layer face net (Section 9): four strided conv layers + a fully connected f.
FACE_NET: tuple[dict[str, int], ...] = (
    {"filters": 96, "kernel": 7, "stride": 3},
    {"filters": 128, "kernel": 5, "stride": 2},
    {"filters": 256, "kernel": 5, "stride": 2},
    {"filters": 512, "kernel": 5, "stride": 2},
)


def _layer_spec(spec: Mapping[str, Any], index: int) -> dict[str, int]:
    unknown = set(spec) - {"filters", "kernel", "stride", "padding"}
    if unknown or "filters" not in spec or "kernel" not in spec:
        raise ValueError(
            f"model.energy.layers[{index}] must have keys filters, kernel (and optionally stride, padding); got {dict(spec)}"
        )
    out = {"filters": int(spec["filters"]), "kernel": int(spec["kernel"]), "stride": int(spec.get("stride", 1))}
    out["padding"] = int(spec["padding"]) if spec.get("padding") is not None else out["kernel"] // 2
    if out["filters"] < 1 or out["kernel"] < 1 or out["stride"] < 1 or out["padding"] < 0:
        raise ValueError(f"model.energy.layers[{index}] has a non-positive size: {dict(spec)}")
    return out


class ScratchEnergy(Energy):
    """f(I; w) of eq. (25) for a stack of conv layers learned from scratch.

    Args:
        layers: the conv layers, bottom first, each ``{filters, kernel, stride, padding}``
            (padding defaults to kernel // 2). Default: the paper's face net.
        image_size: side of the (square) images; fixes the dense readout's shape.
        channels: 1 (grey) or 3 (colour) input channels.
        readout: ``dense``, ``stationary`` or ``sum`` (see the module docstring).
        init_std: standard deviation of the initial weights (N(0, 0.01^2) as the authors).
        frozen_layers: the lowest `frozen_layers` conv layers are kept fixed (layer-by-layer
            growth, Section 7.3).
        reference_mean: mean of the reference q(I) that the input space subtracts: ``grey``
            (constant) or ``data`` (the mean training image, set by ``input_space.fit``).
        activation: the rectification h of eq. (17): ``relu`` (the paper) or a smooth one
            (``leaky_relu``, ``elu``, ``softplus``, ``silu``). The detector maps of eq. (22)
            stay the indicators of a positive pre-activation.
    """

    def __init__(
        self,
        layers: Sequence[Mapping[str, Any]] = FACE_NET,
        image_size: int = 64,
        channels: int = 1,
        readout: str = "dense",
        init_std: float = 0.01,
        frozen_layers: int = 0,
        reference_mean: str = "grey",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"model.energy.readout must be one of {READOUTS}, got {readout!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.energy.activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.act = ACTIVATIONS[activation]
        specs = [_layer_spec(spec, i) for i, spec in enumerate(layers)]
        if not specs:
            raise ValueError("model.energy.layers is empty: give at least one conv layer")
        if not 0 <= int(frozen_layers) <= len(specs):
            raise ValueError(f"model.energy.frozen_layers must be in [0, {len(specs)}] (the number of layers), got {frozen_layers}")
        self.input_space = PixelSpace(int(channels), reference_mean, int(image_size), per_pixel=readout == "dense")
        self.positional = readout == "dense"
        self.channels = int(channels)
        self.image_size = int(image_size)
        self.readout = readout
        self.specs = specs
        self.frozen_layers = int(frozen_layers)

        self.convs = nn.ModuleList()
        in_channels, side = self.channels, self.image_size
        for i, spec in enumerate(specs):
            self.convs.append(learned_conv(in_channels, spec["filters"], spec["kernel"], spec["stride"], spec["padding"], init_std))
            in_channels, side = spec["filters"], conv_out(side, spec["kernel"], spec["stride"], spec["padding"])
            if side < 1:
                raise ValueError(f"model.energy.layers[{i}] leaves no positions on a {self.image_size}px image: add padding or lower the stride")
        self.top_shape = (in_channels, side, side)
        if readout == "dense":
            self.readout_weight = nn.Parameter(torch.randn(self.top_shape) * init_std)
        elif readout == "stationary":
            self.readout_weight = nn.Parameter(torch.randn(in_channels) * init_std)
        else:
            self.register_parameter("readout_weight", None)
        self.readout_bias = nn.Parameter(torch.zeros(())) if readout != "sum" else None
        for conv in self.convs[: self.frozen_layers]:
            conv.requires_grad_(False)

    # -- the network ----------------------------------------------------------------------------
    def features(self, x: Tensor) -> dict[str, Tensor]:
        """The frozen lower layers (none unless growing layer by layer), once per batch."""
        if tuple(x.shape[1:2]) != (self.channels,):
            raise ValueError(f"this net takes {self.channels}-channel images in its input space, got shape {tuple(x.shape)}")
        for conv in self.convs[: self.frozen_layers]:
            x = self.act(conv(x))
        return {"bottom": x}

    def hidden(self, feats: dict[str, Tensor]) -> list[Tensor]:
        """Pre-activations of the learned layers above the frozen ones, bottom first."""
        x, out = feats["bottom"].float(), []  # fp32 outside autocast (the loss), bf16 under it
        for conv in self.convs[self.frozen_layers:]:
            pre = conv(x)
            out.append(pre)
            x = self.act(pre)
        return out

    def top(self, feats: dict[str, Tensor]) -> Tensor:
        """h_L(I), the top layer's rectified responses [B, C, h, w]."""
        pre = self.hidden(feats)
        return self.act(pre[-1]) if pre else feats["bottom"].float()

    @torch.no_grad()
    def detector_maps(self, x: Tensor, layer: int = -1) -> Tensor:
        """delta_{j,y}(I) of eq. (22) at conv layer `layer` (default: the top), [B, J, h, w] bool."""
        index = range(len(self.convs))[layer]
        h = x
        for i, conv in enumerate(self.convs):
            pre = conv(h)
            if i == index:
                return pre > 0
            h = self.act(pre)
        raise AssertionError("unreachable")

    @property
    def n_filters(self) -> int:
        return self.convs[-1].out_channels

    # -- the Energy interface --------------------------------------------------------------------
    def layer_energies(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        h = self.top(feats).float()
        if self.readout == "dense":
            if tuple(h.shape[1:]) != self.top_shape:
                raise ValueError(
                    f"the dense readout expects top maps {self.top_shape} ({self.image_size}px images) but got "
                    f"{tuple(h.shape[1:])}: the canvas must equal the training image size"
                )
            f = (h * self.readout_weight).flatten(1).sum(1) + self.readout_bias
        elif self.readout == "stationary":
            f = torch.einsum("bchw,c->b", h, self.readout_weight) + self.readout_bias * h.shape[-1] * h.shape[-2]
        else:
            f = h.sum(dim=(1, 2, 3))
        return {"f": f}

    def statistics(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        h = self.top(feats).float()
        return {"top": h if self.readout == "dense" else h.mean(dim=(-2, -1))}

    def gradient_scale(self, layer: str, feats: dict[str, Tensor]) -> float:
        if self.readout == "dense":
            return 1.0
        side = feats["bottom"].shape[-1]
        for spec in self.specs[self.frozen_layers:]:
            side = conv_out(side, spec["kernel"], spec["stride"], spec["padding"])
        return 1.0 / side**2

    # -- layer-by-layer growth -------------------------------------------------------------------
    @torch.no_grad()
    def load_layers(self, state_dict: Mapping[str, Tensor], n_layers: int | None = None, prefix: str = "energy.") -> int:
        """Copies the lowest conv layers from a (shallower) net's state dict; returns how many.

        ``n_layers`` = how many to copy (default: every conv layer of the checkpoint, from the
        bottom up); a mismatched shape raises. When every layer is copied (the same net) the
        readout is copied too.
        """
        available = 0
        while f"{prefix}convs.{available}.weight" in state_dict:
            available += 1
        n = available if n_layers is None else int(n_layers)
        if n > min(available, len(self.convs)):
            raise ValueError(f"cannot copy {n} layers: the checkpoint has {available}, this net {len(self.convs)}")
        for i in range(n):
            for name in ("weight", "bias"):
                source, target = state_dict[f"{prefix}convs.{i}.{name}"], getattr(self.convs[i], name)
                if source.shape != target.shape:
                    raise ValueError(f"layer {i} {name}: checkpoint shape {tuple(source.shape)} != this net's {tuple(target.shape)}")
                target.copy_(source)
        if n == len(self.convs):  # the same net: refine it, readout included
            for name in ("readout_weight", "readout_bias"):
                source, target = state_dict.get(prefix + name), getattr(self, name)
                if source is not None and target is not None and source.shape == target.shape:
                    target.copy_(source)
        return n

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, image_size={self.image_size}, readout={self.readout!r}, "
            f"activation={self.activation!r}, frozen_layers={self.frozen_layers}"
        )
