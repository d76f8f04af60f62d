"""FRAME energies on linear filters (paper, Section 3): the ancestors of the deep models.

On the raw responses r = [F_k * I](x) of a linear filter bank (``frame.nets.FilterBank``):

    stationary       f(I; w) = sum_k sum_x lambda_k(r),  lambda_k(r) = sum_b w_{k,b} h_b(r)    (eq. 5)
    non-stationary   f(I; w) = sum_k sum_x w_{k,x} h(r),  h(r) = |r| or max(0, r)            (eq. 6, 7)

In eq. (5) h_b is the indicator of bin b, so the statistic (1/|D|) sum_x h(r) is the marginal
histogram of filter k. Langevin needs dlambda/dr, which is 0 for a step function, so the bins
are soft: h_b is the bin's box smoothed by a uniform kernel s = ``softness`` bins wide,

    h_b(t) = c_b(t) - c_{b+1}(t),   c_j(t) = clamp((t - j) / s + 1/2, 0, 1),

with t the response in bin units and c_j a linear ramp of width s across edge j. lambda_k is then
the paper's step function with each step replaced by a ramp of width s: continuous, with
dlambda/dr = (w_{k,j} - w_{k,j-1}) / (s x bin width) within s/2 of edge j. With s = 1 (default)
this is linear binning: lambda is the linear interpolation of the steps' heights between bin
centres and the drift never vanishes inside the range. Why this kernel and not a logistic: for
s <= 1 a response touches at most one ramp, so lambda, its gradient and the histogram cost
O(K |D|) whatever the number of bins B (a logistic touches all B - 1 edges: 2x slower per
Langevin step, measured at 128 px, 40 filters, 16 bins, with the same gap per iteration). The B soft bins of a response still
sum to 1 (outer bins open), so the statistic is still a histogram, and h_b tends to the hard
indicator at every r off an edge as s -> 0 (``hard_histogram``). The B bins of filter k split
[m_k - R_k, m_k + R_k] evenly, with m_k and R_k = ``range_sds`` standard deviations of the
observed responses (``fit``, before the first iteration, saved with the model): each filter's
histogram covers its own range, as in FRAME.

Both energies reuse the deep models' learning rule: w starts at 0 (Algorithm 1, step 2) and
moves by w <- w + gamma (H_obs - H_syn) (eq. 14 for the histograms, eq. 13 for eq. 7).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from frame.energies.deep_frame import DeepFrameEnergy, NonStationaryEnergy

RECTIFIERS = {"abs": torch.abs, "relu": torch.relu}


def bin_coordinates(r: Tensor, lower: Tensor, width: Tensor) -> Tensor:
    """Responses [B, K, H, W] -> position in bins of their filter (bin b covers [b, b+1))."""
    return (r - lower[:, None, None]) / width[:, None, None]


def nearest_ramp(t: Tensor, bins: int, softness: float) -> tuple[Tensor, Tensor]:
    """The one edge n whose ramp t may be on, and c_n(t); c_j = 1 below n, 0 above (s <= 1)."""
    n = t.detach().round().clamp(1, bins - 1)
    return n.long(), ((t - n) / softness + 0.5).clamp(0, 1)


def soft_histogram(t: Tensor, bins: int, softness: float, power: int = 1) -> Tensor:
    """Soft marginal histograms [B, K, bins] at bin coordinates t [B, K, H, W]: mass 1 - c_n
    to bin n - 1 and c_n to bin n (linear binning when s = 1). ``power=2``: mean of h_b^2."""
    n, c = nearest_ramp(t, bins, softness)
    index = torch.cat([n - 1, n], -1).flatten(2)
    mass = torch.cat([1 - c, c], -1).flatten(2) ** power
    zeros = torch.zeros(*t.shape[:2], bins, device=t.device, dtype=mass.dtype)
    return zeros.scatter_add(2, index, mass) / (t.shape[-2] * t.shape[-1])


def hard_histogram(t: Tensor, bins: int) -> Tensor:
    """The hard marginal histograms [B, K, bins] at bin coordinates t [B, K, H, W]."""
    index = t.floor().clamp(0, bins - 1).long()
    return torch.nn.functional.one_hot(index, bins).float().mean(dim=(2, 3))


class LinearStationaryEnergy(DeepFrameEnergy):
    """Eq. (5): lambda_k a (soft) step function over ``bins`` bins of filter k's responses.

    Args:
        extractor: the linear filter bank (one layer of K raw responses).
        bins: B, bins per filter.
        softness: s, the width of each step's ramp in bins, 0 < s <= 1 (1: linear binning,
            a drift everywhere in the range; -> 0: the hard histogram).
        range_sds: the bins span the observed mean +- this many standard deviations.
    """

    linear_in_features = False  # histograms of the responses

    def __init__(self, extractor: nn.Module, bins: int = 16, softness: float = 1.0, range_sds: float = 3.0) -> None:
        super().__init__(extractor)
        if int(bins) != bins or bins < 2:
            raise ValueError(f"model.energy.bins must be an integer >= 2, got {bins}")
        if not 0 < softness <= 1:
            raise ValueError(f"model.energy.softness must be in (0, 1] (bin widths), got {softness}")
        self.bins, self.softness, self.range_sds = int(bins), float(softness), float(range_sds)
        for layer in extractor.layers:
            k = extractor.channels(layer)
            self.weights[layer] = nn.Parameter(torch.zeros(k, self.bins))
            self.register_buffer(f"lower_{layer}", torch.zeros(k))
            self.register_buffer(f"width_{layer}", torch.ones(k))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    @torch.no_grad()
    def fit(self, observed: Tensor) -> None:
        """Sets every filter's bins from the observed images (input space)."""
        for layer, r in self.features(observed.float()).items():
            r = r.transpose(0, 1).flatten(1)
            mean, spread = r.mean(1), self.range_sds * r.std(1).clamp_min(1e-3)
            getattr(self, f"lower_{layer}").copy_(mean - spread)
            getattr(self, f"width_{layer}").copy_(2 * spread / self.bins)
        self.fitted.fill_(True)

    def coordinates(self, layer: str, feat: Tensor) -> Tensor:
        if not self.is_fitted:
            raise RuntimeError("the histogram bins are not set: call fit(observed) (FrameModel does before training)")
        return bin_coordinates(feat.float(), getattr(self, f"lower_{layer}"), getattr(self, f"width_{layer}"))

    def statistic(self, layer: str, feat: Tensor) -> Tensor:
        """The soft marginal histograms [B, K, bins] (each row sums to 1)."""
        return soft_histogram(self.coordinates(layer, feat), self.bins, self.softness)

    def hard_statistic(self, layer: str, feat: Tensor) -> Tensor:
        """The hard marginal histograms [B, K, bins] on the same bins (for reports)."""
        return hard_histogram(self.coordinates(layer, feat), self.bins)

    def layer_energies(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        """sum_k sum_x lambda_k(r) (eq. 5) = |D| <w, H(I)>, by the one ramp each r is on."""
        out = {}
        for layer, w in self.weights.items():
            n, c = nearest_ramp(self.coordinates(layer, feats[layer]), self.bins, self.softness)
            rows = torch.arange(w.shape[0], device=w.device)[:, None, None] * self.bins
            below, above = w.flatten()[rows + n - 1], w.flatten()[rows + n]
            out[layer] = (below + (above - below) * c).flatten(1).sum(1)
        return out

    def pooled_positions(self, feat: Tensor) -> int:
        return feat.shape[-2] * feat.shape[-1]

    def response_variance(self, feat: Tensor) -> Tensor:
        """Variance over images and positions of each soft indicator h_{k,b} [K, bins]."""
        t = self.coordinates(self.extractor.layers[0], feat).transpose(0, 1).flatten(1)[None, :, :, None]
        mean, square = (soft_histogram(t, self.bins, self.softness, p)[0] for p in (1, 2))
        return square - mean**2


class LinearNonStationaryEnergy(NonStationaryEnergy):
    """Eq. (6)-(7): lambda_{k,x}(r) = w_{k,x} h(r), with q(I) of eq. (8) in the sampler.

    Args:
        extractor: the linear filter bank.
        image_size: side of the aligned images (fixes the positions x).
        rectify: h, ``abs`` (full-wave, the paper's choice) or ``relu`` (half-wave).
    """

    linear_in_features = False  # h(r) of the responses

    def __init__(self, extractor: nn.Module, image_size: int, rectify: str = "abs") -> None:
        if rectify not in RECTIFIERS:
            raise ValueError(f"model.energy.rectify must be one of {tuple(RECTIFIERS)}, got {rectify!r}")
        super().__init__(extractor, image_size)
        self.rectify = rectify

    def statistic(self, layer: str, feat: Tensor) -> Tensor:
        return RECTIFIERS[self.rectify](super().statistic(layer, feat))

    def response_variance(self, feat: Tensor) -> Tensor:
        return RECTIFIERS[self.rectify](feat).var(0, unbiased=False)
