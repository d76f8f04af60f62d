"""Frozen VGG-16 feature extractor with named taps.

The deep FRAME model puts its energy on filter responses of a pretrained
ConvNet: the filters F_j^(l) of eq. (2), computed recursively as
``h(sum_k w * F_k^(l-1) + b)`` with h = ReLU, i.e. the post-ReLU feature maps
of VGG-16 (Sections 4 and 6: "the filters of the ConvNet learned by the VGG
group on the ImageNet dataset", used via MatConvNet). Tap names follow the
paper's / Caffe's convention: ``conv3_3`` is the ReLU output of the third conv
of block 3, ``pool3`` the 2x2 max-pool output after it.

Modules are indexed exactly like torchvision's ``vgg16().features`` so its state
dicts load unchanged; the network is truncated after the deepest requested tap.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from frame.input_space import network_space
from frame.nets.weights import VGG16_ARCH, VGG16_CFG, Layer, load_vgg16_state_dict

#: ``source`` of an extractor rebuilt from a checkpoint: its weights come from the checkpoint's
#: state dict, so nothing is read from a weight source (or the network)
CHECKPOINT_SOURCE = "checkpoint"

_ARCH: dict[str, Layer] = {layer.name: layer for layer in VGG16_ARCH}

#: Tap name -> index in ``vgg16().features`` of the module whose output is tapped
#: (the ReLU after a conv, or the MaxPool itself), in depth order.
VGG16_LAYERS: dict[str, int] = {
    layer.name: layer.index + (1 if layer.name.startswith("conv") else 0) for layer in VGG16_ARCH
}


def _layer(name: str) -> Layer:
    if name not in _ARCH:
        raise ValueError(f"unknown VGG-16 layer {name!r}; valid layers: {', '.join(VGG16_LAYERS)}")
    return _ARCH[name]


PADDINGS = ("zeros", "circular")
POOLINGS = ("max", "avg", "blurmax")


class BlurMaxPool2d(nn.Module):
    """Anti-aliased 2x2 max-pooling (Zhang 2019, "Making convolutional networks shift-invariant
    again"): the max over each 2x2 window at stride 1, then a [1, 2, 1] x [1, 2, 1] / 16 blur
    taken at stride 2. The max keeps VGG's features close to its own; the blur before
    subsampling keeps the pooled maps, and so the gradient the Langevin chains follow, from
    aliasing onto the pooling lattice. Borders are reflected, or wrapped with ``circular``
    padding (the torus of ``build_features``).
    """

    def __init__(self, padding: str = "zeros") -> None:
        super().__init__()
        self.circular = padding == "circular"
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (taps[:, None] * taps[None, :] / 16).view(1, 1, 3, 3), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.circular:  # wrap the max's last row and column: the torus stays a torus
            x = F.pad(x, (0, 1, 0, 1), mode="circular")
        x = F.max_pool2d(x, kernel_size=2, stride=1)
        x = F.pad(x, (1, 1, 1, 1), mode="circular" if self.circular else "reflect")
        channels = x.shape[1]
        return F.conv2d(x, self.kernel.to(x.dtype).expand(channels, 1, 3, 3), stride=2, groups=channels)


def _pool(pooling: str, padding: str) -> nn.Module:
    if pooling == "max":
        return nn.MaxPool2d(kernel_size=2, stride=2)
    return nn.AvgPool2d(kernel_size=2, stride=2) if pooling == "avg" else BlurMaxPool2d(padding)


def build_features(depth: int | None = None, padding: str = "zeros", pooling: str = "max") -> nn.Sequential:
    """``vgg16().features`` (same module indices), keeping the first ``depth`` modules.

    ``padding="circular"`` wraps every 3x3 conv around the image borders: the filters then see
    a torus, so a stationary model's samples tile without seams (on canvases divisible by the
    taps' pooling factor). ``pooling="avg"`` replaces VGG's 2x2 max-pools by average pools, as
    Gatys et al. (2015) do for texture synthesis: df/dI then reaches every pixel of a pooling
    window instead of its argmax only (the filters are unchanged; the features are not the
    same, so a model learned with one pooling does not transfer to the other). ``pooling="blurmax"``
    blurs before subsampling (``BlurMaxPool2d``): no aliasing onto the 2, 4, 8 px pooling lattices.
    """
    if padding not in PADDINGS:
        raise ValueError(f"model.energy.extractor.padding must be one of {PADDINGS}, got {padding!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"model.energy.extractor.pooling must be one of {POOLINGS}, got {pooling!r}")
    modules: list[nn.Module] = []
    channels = 3
    for v in VGG16_CFG:
        if v == "M":
            modules.append(_pool(pooling, padding))
        else:
            conv = nn.Conv2d(channels, int(v), kernel_size=3, padding=1, padding_mode=padding)
            modules += [conv, nn.ReLU(inplace=False)]
            channels = int(v)
    return nn.Sequential(*modules[:depth])


# ----------------------------------------------------------------------------- extractor


class VGG16Features(nn.Module):
    """Frozen VGG-16 returning the post-ReLU responses F^(l) * I (eq. (2)) at named taps.

    Args:
        layers: the taps (``conv3_3``, ``pool2``, ...); the net is cut after the deepest.
        source: where the weights come from: ``caffe`` (the authors'), ``torchvision``,
            ``random`` (tests), a path to a state dict, or ``checkpoint`` (filled in by a
            checkpoint's state dict, so nothing is read).
        cache_dir: where ``caffe`` weights are cached (``FRAME_CACHE`` wins).
        seed: of the ``random`` weights.
        input_space: ``caffe`` or ``torchvision`` (default: the source's, ``frame.input_space``).
        padding: ``zeros`` (VGG's) or ``circular`` (seamless textures, see ``build_features``).
        pooling: ``max`` (VGG's), ``avg`` (smoother gradients) or ``blurmax`` (anti-aliased), see ``build_features``.
        grey: the chains are grey images (one channel), fed to the net in all three channels.
    """

    def __init__(
        self,
        layers: Sequence[str] = ("conv3_3",),
        source: str = "caffe",
        cache_dir: str | None = None,
        seed: int = 0,
        input_space: str | None = None,
        padding: str = "zeros",
        grey: bool = False,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        names = (layers,) if isinstance(layers, str) else tuple(layers)
        if not names:
            raise ValueError(f"no layers requested; valid layers: {', '.join(VGG16_LAYERS)}")
        for name in names:
            _layer(name)
        self.layers: tuple[str, ...] = tuple(sorted(set(names), key=VGG16_LAYERS.__getitem__))
        if grey not in (True, False):
            raise ValueError(
                f"model.energy.extractor.grey must be true or false, got {grey!r} (data.grayscale=auto is "
                "decided from the images when training starts: frame.run.build.prepare_data)"
            )
        self.source = str(source)
        #: how images map to this network's input (``frame.input_space``)
        self.input_space = network_space(self.source, input_space, grey)
        self._taps: dict[int, str] = {VGG16_LAYERS[n]: n for n in self.layers}

        depth = VGG16_LAYERS[self.layers[-1]] + 1
        self.padding = padding
        self.pooling = pooling
        self.features = build_features(depth, padding, pooling)
        if self.source != CHECKPOINT_SOURCE:
            state_dict = load_vgg16_state_dict(self.source, cache_dir=cache_dir, seed=seed)
            self.load_state_dict({k: v for k, v in state_dict.items() if int(k.split(".")[1]) < depth})
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG16Features:
        """The extractor is fixed: it always stays in eval mode."""
        return super().train(False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``x`` in the input space (``self.input_space``) -> {tap name: [B, C, h, w]} in depth order."""
        out: dict[str, Tensor] = {}
        x = self.input_space.to_network(x)
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self._taps:
                out[self._taps[i]] = x
        return out

    @staticmethod
    def channels(name: str) -> int:
        return _layer(name).out_channels

    @staticmethod
    def min_input_size(name: str) -> int:
        """Smallest square input giving the tap >= 1 spatial position (3x3 convs pad 1; pools floor-halve)."""
        return 2 ** _layer(name).n_pools

    @staticmethod
    def receptive_field(name: str) -> int:
        """Side in pixels of the image patch one response of the tap sees (conv3_3: 40)."""
        size, jump = 1, 1
        for module in build_features(VGG16_LAYERS[name] + 1):
            if isinstance(module, nn.Conv2d):
                size += (module.kernel_size[0] - 1) * jump
            elif isinstance(module, nn.MaxPool2d):
                size += (module.kernel_size - 1) * jump
                jump *= module.stride
        return size

    def check_image_size(self, size: int, key: str) -> None:
        """Fails when `size` gives a tap no position; warns below a tap's receptive field."""
        for name in self.layers:
            if size < self.min_input_size(name):
                raise ValueError(
                    f"{key}={size} is too small for VGG layer {name}: it needs images of at least "
                    f"{self.min_input_size(name)} px (its receptive field is {self.receptive_field(name)} px)"
                )
            if size < self.receptive_field(name):
                warnings.warn(
                    f"{key}={size} is smaller than the {self.receptive_field(name)} px receptive field of "
                    f"{name}: its filters see mostly padding",
                    stacklevel=2,
                )

    @staticmethod
    def feature_shape(name: str, h: int, w: int) -> tuple[int, int, int]:
        layer = _layer(name)
        return layer.out_channels, h >> layer.n_pools, w >> layer.n_pools

    def extra_repr(self) -> str:
        return f"layers={self.layers}, source={self.source!r}, padding={self.padding!r}, pooling={self.pooling!r}"
