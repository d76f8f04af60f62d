"""VGG-16 features for judging images, independent of the model being judged.

The metrics of ``frame.eval`` compare images through the ImageNet VGG-16 filters (the same
offline Caffe weights the models use, ``frame.nets.VGG16Features``), not through Inception-v3:
these are **VGG-16 feature distances, not Inception FID**, so their values are not comparable
with published FIDs. They are comparable with each other, and with the floor and ceiling
that ``frame.eval.report`` reports next to each of them.

Two views of an image set:

``VGGFeatures(images) -> [N, D]``
    one vector per image, the global average of the conv5_3 responses (512 numbers), and
    optionally of further taps concatenated after it. conv5_3 is the deepest tap of the
    network: its responses are the most object-like and the least tied to pixel texture,
    and no preset learns its energy on it (the presets use conv1_2 to conv3_3), so the
    distance does not simply re-read statistics the model was trained to match. No second tap
    is concatenated by default: raw responses of another tap (conv4_3) are several times
    larger and would outweigh conv5_3 in every distance. Images whose shorter side is below
    ``min_size`` (64) are **upsampled** (bilinear) to it first, so that conv5_3 keeps a 4x4
    map to pool over (it needs 16 px at the very least); upsampling further gives its 196 px
    receptive field more image and less padding, at a cost that grows with the square of the
    side. These vectors feed KID, the Fréchet distance, precision/recall, density/coverage
    (``frame.eval.distribution``).
``VGGFeatures.maps(images) -> {tap: [N, C, h, w]}``
    the responses themselves, at the images' own scale (never resized: texture statistics
    depend on scale); used for Gram matrices and sliced Wasserstein distances over
    conv1_1..conv5_1 (``frame.eval.texture``).

Images enter as float tensors ``[N, C, H, W]`` in [0, 1], RGB, or grey (C = 1, replicated to
three channels); values outside [0, 1] are clamped (the metric judges what a viewer sees).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from frame.nets import VGG16Features

#: pooled taps of the distribution metrics (see the module docstring)
POOLED_LAYERS = ("conv5_3",)
#: Gatys et al. (2015)'s texture taps
TEXTURE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
#: shorter side images are upsampled to before pooled features
MIN_SIZE = 64


def as_rgb01(images: Tensor) -> Tensor:
    """``[N, 1 or 3, H, W]`` -> float ``[N, 3, H, W]`` clamped to [0, 1]."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 1 or 3, H, W] in [0, 1], got shape {tuple(images.shape)}")
    images = images.float().clamp(0, 1)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class VGGFeatures(nn.Module):
    """Frozen VGG-16 (Caffe ImageNet weights by default) as an image-set feature extractor.

    Also usable directly as the ``feature`` module of torchmetrics' ``KernelInceptionDistance``
    and ``FrechetInceptionDistance`` (it has ``num_features``; pass [0, 1] float images).

    Args:
        layers: taps pooled by :meth:`forward` (global average), concatenated in this order.
        texture_layers: taps returned by :meth:`maps`.
        source: weight source of ``VGG16Features`` (``caffe``; ``random`` in tests).
        cache_dir: weights cache (default ``$FRAME_CACHE`` or ``~/.cache/frame``).
        min_size: :meth:`forward` upsamples images whose shorter side is smaller (0 = never).
        batch_size: images per forward pass (bounds memory).
    """

    def __init__(
        self,
        layers: Sequence[str] = POOLED_LAYERS,
        texture_layers: Sequence[str] = TEXTURE_LAYERS,
        source: str = "caffe",
        cache_dir: str | None = None,
        min_size: int = MIN_SIZE,
        batch_size: int = 50,
    ) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.texture_layers = tuple(texture_layers)
        if not self.layers and not self.texture_layers:
            raise ValueError("VGGFeatures needs at least one tap in layers or texture_layers")
        self.vgg = VGG16Features(layers=self.layers + self.texture_layers, source=source, cache_dir=cache_dir)
        self.min_size = int(min_size)
        self.batch_size = int(batch_size)
        self.num_features = sum(VGG16Features.channels(name) for name in self.layers)

    @property
    def device(self) -> torch.device:
        return next(self.vgg.parameters()).device

    def _input(self, images: Tensor) -> Tensor:
        space = getattr(self.vgg, "input_space", None)  # the one map from images to VGG's input
        x = as_rgb01(images).to(self.device)
        return space.to_input(x) if space is not None else self.vgg.to_input(x)

    def _run(self, images: Tensor, layers: tuple[str, ...]) -> dict[str, Tensor]:
        out: dict[str, list[Tensor]] = {name: [] for name in layers}
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                responses = self.vgg(self._input(images[start : start + self.batch_size]))
                for name in layers:
                    out[name].append(responses[name].float())
        return {name: torch.cat(chunks) for name, chunks in out.items()}

    def upsampled(self, images: Tensor) -> Tensor:
        """Images with the shorter side raised to ``min_size`` (aspect kept); others unchanged."""
        side = min(images.shape[-2:])
        if side >= self.min_size:
            return images
        size = [round(s * self.min_size / side) for s in images.shape[-2:]]
        return nn.functional.interpolate(images.float(), size=size, mode="bilinear", align_corners=False)

    def forward(self, images: Tensor) -> Tensor:
        """``[N, C, H, W]`` in [0, 1] -> ``[N, num_features]``: pooled taps, concatenated."""
        if not self.layers:
            raise ValueError("VGGFeatures(layers=()) has no pooled taps")
        maps = self._run(self.upsampled(as_rgb01(images)), self.layers)
        return torch.cat([maps[name].mean(dim=(2, 3)) for name in self.layers], dim=1)

    def maps(self, images: Tensor) -> dict[str, Tensor]:
        """``[N, C, H, W]`` in [0, 1], at their own scale -> {texture tap: [N, C_l, h, w]}."""
        if not self.texture_layers:
            raise ValueError("VGGFeatures(texture_layers=()) has no texture taps")
        for name in self.texture_layers:
            need = VGG16Features.min_input_size(name)
            if min(images.shape[-2:]) < need:
                raise ValueError(f"texture crops of {tuple(images.shape[-2:])} px are too small for {name} (>= {need} px)")
        return self._run(images, self.texture_layers)
