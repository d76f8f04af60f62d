"""FRAME on the features of the top layer (paper, Section 7, eq. 24).

    p(I; w) = exp( sum_k w_k [F_k * I] ) q(I) / Z(w)                      (eq. 24)

F_k is the k-th feature of the top layer, one number per image (a filter whose map is 1 x 1).
The weights we can load hold VGG-16's convolutions only, so the top layer here is the deepest
convolution layer, conv5_3 by default, whose maps are averaged over their positions into a
vector of K = 512 features (global average pooling). f(I; w) = w . F(I) is then linear in the
K pooled features: the score of one category in the soft-max classifier of eq. (3)-(4), and
one model per category with the categories' priors gives that classifier by the Bayes rule
(``frame.classify``).

Compared with the stationary model of eq. (10) on the same layer, f is not multiplied by the
number of positions |D|: F(I) is the image's one top-layer vector, not a sum over a field.
Z(w) therefore belongs to one image size, and the chains' canvas must equal the images'.
Learning is Algorithm 1 unchanged: w <- w + gamma (mean_obs F - mean_syn F).
"""

from __future__ import annotations

import torch
from torch import Tensor

from frame.energies.deep_frame import StationaryEnergy


class TopLayerEnergy(StationaryEnergy):
    """Eq. (24): f(I; w) = sum_k w_k F_k(I), F_k(I) the spatial mean of top-layer channel k.

    Args:
        extractor: frozen filter bank (``frame.nets.VGG16Features`` with ``layers: [conv5_3]``);
            with several layers, their pooled features are concatenated into one vector.
    """

    def check_canvas(self, image_size: int, canvas: int) -> None:
        self.check_image_size(image_size)
        if canvas != image_size:
            raise ValueError(
                f"model.canvas_size ({canvas}) must equal data.image_size ({image_size}) for {type(self).__name__}: "
                "its top-layer features and Z(w) belong to one image size"
            )

    def pooled_positions(self, feat: Tensor) -> int:
        return 1

    def response_variance(self, feat: Tensor) -> Tensor:
        """Variance over images of each pooled feature F_k (what the weight w_k multiplies)."""
        return self.statistic("", feat).var(0, unbiased=False)

    def feature_vector(self, feats: dict[str, Tensor]) -> Tensor:
        """F(I) [B, K]: the pooled top-layer features, layers concatenated in depth order (in the maps' dtype)."""
        return torch.cat([self.statistic(layer, feats[layer]) for layer in self.weights], dim=1)

    def weight_vector(self) -> Tensor:
        """w [K], in the order of ``feature_vector``: f(I; w) = w . F(I)."""
        return torch.cat([w.detach().float() for w in self.weights.values()])
