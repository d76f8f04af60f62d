"""Deep FRAME energies on fixed ConvNet filters (paper, Section 4).

Both variants are linear in w on top of frozen filter responses [F_k * I](x) (post-ReLU maps
of pretrained VGG-16 layers, or any extractor with the same interface):

    non-stationary   f(I; w) = sum_l sum_k sum_x w_{l,k,x} [F_{l,k} * I](x)      (eq. 9)
    stationary       f(I; w) = sum_l sum_k w_{l,k} sum_x [F_{l,k} * I](x)        (eq. 10)

Several layers l may be used at once; each has its own weights. The weights start at 0
(Algorithm 1, step 2) and move by eq. (13) (non-stationary, per position) or eq. (14)
(stationary: the pooled statistic is divided by |D|, i.e. it is the spatial mean).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from frame.energies.base import Energy


class WeightedSum(torch.autograd.Function):
    """<w, H> per image: sum over every dim but the batch of H [B, ...] times w [...].

    The sum is taken in (at least) fp32 whatever H's precision. Its gradient with respect to H is
    g_b * w in H's dtype and memory format, so that under bf16 autocast the Langevin gradient of
    a channels-last map joins the rest of the backward pass without a cast or a layout copy
    (autograd of ``(H.float() * w).flatten(1).sum(1)`` makes an fp32 NCHW copy of every map).
    """

    @staticmethod
    def forward(ctx, stat: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(stat, w)
        wide = torch.promote_types(stat.dtype, torch.float32)
        weighted = stat * _laid_out_as(w.to(wide), stat)  # promoted: exact products in `wide`
        return weighted.sum(dim=tuple(range(1, stat.dim())))  # no reshape: no copy of a channels-last map

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        stat, w = ctx.saved_tensors
        per_image = grad.view(-1, *([1] * (stat.dim() - 1)))
        grad_stat = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_stat = per_image.to(stat.dtype) * _laid_out_as(w.to(stat.dtype), stat)
        if ctx.needs_input_grad[1]:
            grad_w = (per_image * stat.to(per_image.dtype)).sum(0).to(w.dtype)
        return grad_stat, grad_w


def _laid_out_as(w: Tensor, stat: Tensor) -> Tensor:
    """w [K, h, w] as a [1, K, h, w] tensor in the memory format of the maps `stat` (channels-last
    or not), so that products with them run at memory speed; other shapes unchanged."""
    if stat.dim() != 4:
        return w
    layout = torch.channels_last if stat.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return w.unsqueeze(0).contiguous(memory_format=layout)


class DeepFrameEnergy(Energy):
    """f_l(I; w) = |pooled positions| * <w_l, H_l(I)>, with H_l the per-image statistic."""

    linear_in_features = True  # H_l is the map itself (eq. 9) or its spatial mean (eq. 10)

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.input_space = extractor.input_space
        self.weights = nn.ParameterDict()

    def check_image_size(self, size: int) -> None:
        self.extractor.check_image_size(size, "data.image_size")

    # -- what a variant defines -------------------------------------------------------------
    def statistic(self, layer: str, feat: Tensor) -> Tensor:
        """H_l(I) per image from the layer's filter responses [B, K, h, w]."""
        raise NotImplementedError

    def pooled_positions(self, feat: Tensor) -> int:
        """How many positions x the statistic averages over (|D| in eq. 14; 1 if none)."""
        raise NotImplementedError

    def response_variance(self, feat: Tensor) -> Tensor:
        """Observed variance of the responses behind each weight (for gamma ~ 1/variance)."""
        raise NotImplementedError

    # -- the shared part ----------------------------------------------------------------------
    def features(self, x: Tensor) -> dict[str, Tensor]:
        return self.extractor(x)

    def statistics(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        return {layer: self.statistic(layer, feats[layer]) for layer in self.weights}

    def layer_energies(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        return {
            layer: self.pooled_positions(feats[layer]) * WeightedSum.apply(self.statistic(layer, feats[layer]), w)
            for layer, w in self.weights.items()
        }

    def gradient_scale(self, layer: str, feats: dict[str, Tensor]) -> float:
        return 1.0 / self.pooled_positions(feats[layer])

    @torch.no_grad()
    def variance_preconditioner(
        self, feats_obs: dict[str, Tensor], eps: float = 1e-2, reduce: Callable[[Tensor], Tensor] = lambda v: v
    ) -> dict[str, Tensor]:
        """Per-weight learning-rate factors proportional to 1 / observed variance (Section 5.1).

        Normalised to mean 1 per layer so that the configured learning rate keeps its scale;
        `eps` (relative to the layer's mean variance) keeps dead filters from exploding.
        `reduce` averages the variances over processes, so that every process scales alike.
        """
        factors = {}
        for layer in self.weights:
            var = reduce(self.response_variance(feats_obs[layer].float()))
            inv = 1.0 / (var + eps * var.mean().clamp_min(1e-12))
            factors[layer] = inv / inv.mean()
        return factors

    @torch.no_grad()
    def layer_preconditioner(
        self, feats_obs: dict[str, Tensor], reduce: Callable[[Tensor], Tensor] = lambda v: v
    ) -> dict[str, Tensor]:
        """One learning-rate factor per layer, inversely proportional to its mean observed variance.

        Section 5.1's gamma ~ 1 / variance taken per layer rather than per weight: the responses
        of VGG-16's layers differ in scale by orders of magnitude, so with one rate a shallow
        layer (small responses, small pull on the pixels) hardly learns beside conv3_3. The layer
        with the largest variance keeps the configured rate (factor 1): a one-layer model is
        unchanged. `reduce` as above.
        """
        variances = {layer: reduce(self.response_variance(feats_obs[layer].float()).mean()) for layer in self.weights}
        largest = max(variances.values())
        return {layer: largest / var.clamp_min(1e-12) for layer, var in variances.items()}


class NonStationaryEnergy(DeepFrameEnergy):
    """Eq. (9): a weight per filter and position, for aligned objects (Experiment 1).

    Args:
        extractor: frozen filter bank (e.g. ``frame.nets.VGG16Features``).
        image_size: side of the (square) images; fixes the positions x of w_{k,x}.
        net_size: the least side at which the filters see the images: smaller images are
            upsampled to it (bilinearly, as the data pipeline resizes); images of that side or
            more, and null, leave the images as they are. Images stored at a lower resolution
            than the filters need (scikit-image's LFW faces are 25 px; conv3_3 sees 40 px) are
            then modelled at their own resolution: the chains have no finer detail than the
            data, which the filters would otherwise fill with detail the data lacks. The
            weights sit on the maps of the side the filters see.
    """

    positional = True

    def __init__(self, extractor: nn.Module, image_size: int, net_size: int | None = None) -> None:
        super().__init__(extractor)
        self.image_size = int(image_size)
        if net_size is not None and (isinstance(net_size, bool) or not isinstance(net_size, int) or net_size < 1):
            raise ValueError(f"model.energy.net_size must be null or a positive integer (a side in pixels), got {net_size!r}")
        self.net_size = net_size if net_size is not None and net_size > self.image_size else None
        side = self.net_size or self.image_size
        for layer in extractor.layers:
            shape = extractor.feature_shape(layer, side, side)
            self.weights[layer] = nn.Parameter(torch.zeros(shape))

    def check_image_size(self, size: int) -> None:
        if self.net_size is None:
            super().check_image_size(size)
        else:
            self.extractor.check_image_size(self.net_size, "model.energy.net_size")

    def features(self, x: Tensor) -> dict[str, Tensor]:
        if self.net_size is not None and tuple(x.shape[-2:]) != (self.net_size, self.net_size):
            x = F.interpolate(x, size=(self.net_size, self.net_size), mode="bilinear", align_corners=False)
        return super().features(x)

    def statistic(self, layer: str, feat: Tensor) -> Tensor:
        expected = tuple(self.weights[layer].shape)
        if tuple(feat.shape[1:]) != expected:
            raise ValueError(
                f"non-stationary FRAME at {layer} has weights for maps of shape {expected} "
                f"(image_size={self.image_size}, net_size={self.net_size}) but got {tuple(feat.shape[1:])}: its canvas "
                "must equal the training image size"
            )
        return feat

    def pooled_positions(self, feat: Tensor) -> int:
        return 1

    def response_variance(self, feat: Tensor) -> Tensor:
        return feat.var(0, unbiased=False)


class StationaryEnergy(DeepFrameEnergy):
    """Eq. (10): one weight per filter, pooled over all positions, for textures (Experiment 2).

    The canvas the chains live on may be larger than the observed image: the statistic is the
    spatial mean, so observed and synthesized statistics compare at any size.
    """

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__(extractor)
        for layer in extractor.layers:
            self.weights[layer] = nn.Parameter(torch.zeros(extractor.channels(layer)))

    def statistic(self, layer: str, feat: Tensor) -> Tensor:
        return feat.mean(dim=(-2, -1))

    def pooled_positions(self, feat: Tensor) -> int:
        return feat.shape[-2] * feat.shape[-1]

    def response_variance(self, feat: Tensor) -> Tensor:
        return feat.transpose(0, 1).flatten(1).var(1, unbiased=False)
