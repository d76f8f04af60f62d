"""What every FRAME energy provides: f(I; w) split by layer, and its statistics.

A variant of the model is an energy (this interface) plus its defaults; the learning loop
(Algorithm 1, `frame.models.base.FrameModel`) and the sampler are shared by all of them.

    f(I; w) = sum_l f_l(I; w)                                    (eq. 9, 10, 20, 25)

The learning step moves w along  mean_obs d f_l/dw - mean_syn d f_l/dw  (eq. 12, 21, 27),
scaled per layer by ``gradient_scale`` (1/|D_l| where the statistic pools over positions, as
in eq. 14 and the authors' code). ``statistics`` are the quantities whose observed and
synthesized means are compared in the logs (``train/gap_rel``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from frame.input_space import InputSpace


class Energy(nn.Module):
    """Base class: subclasses define ``features``, ``layer_energies`` and ``statistics``."""

    #: how images map into the space the chains and the network live in
    input_space: InputSpace
    #: the weights are tied to positions (eq. 9, a dense readout): the canvas of the chains
    #: must equal the training images' size; otherwise it may be larger (textures)
    positional: bool = False
    #: the statistics and f_l are linear in the features (eq. 9, 10): the mean of f_l over a
    #: batch is f_l of the batch's mean features, so the observed side of learning needs only
    #: that mean (``FrameModel`` keeps it instead of every observed image's maps)
    linear_in_features: bool = False

    def check_image_size(self, size: int) -> None:
        """Fails with a message naming ``data.image_size`` when the net cannot take `size`."""

    def canvas(self, image_size: object, canvas_size: object = None) -> int:
        """The side of the chains: `canvas_size` (null: `image_size`), both checked, naming their keys."""
        for key, value, null in (("model.image_size", image_size, ""), ("model.canvas_size", canvas_size, " or null")):
            if (value is not None or not null) and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{key} must be an integer >= 1{null}, got {value!r}")
        canvas = canvas_size or image_size
        self.check_canvas(image_size, canvas)
        return canvas

    def check_canvas(self, image_size: int, canvas: int) -> None:
        """The canvas of the chains against the training images' size, naming the keys."""
        self.check_image_size(image_size)
        if self.positional and canvas != image_size:
            raise ValueError(
                f"model.canvas_size ({canvas}) must equal data.image_size ({image_size}) for "
                f"{type(self).__name__}: its weights are tied to positions"
            )
        if canvas < image_size:
            raise ValueError(
                f"model.canvas_size ({canvas}) is smaller than data.image_size ({image_size}): the "
                "synthesized canvas must be at least as large as the observed images"
            )

    def fit(self, observed: Tensor) -> None:
        """Sets what the energy takes from the observed images (input space) before the first
        iteration, saved with the model (nothing unless it says so: e.g. histogram bins)."""

    @property
    def is_fitted(self) -> bool:
        return True

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """The network responses the energy is built on, computed once per batch."""
        raise NotImplementedError

    def layer_energies(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        """f_l(I; w) per image [B] for every layer l; f = sum_l f_l."""
        raise NotImplementedError

    def statistics(self, feats: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-image statistics H_l(I) [B, ...] that learning matches between data and dreams."""
        raise NotImplementedError

    def gradient_scale(self, layer: str, feats: dict[str, Tensor]) -> float:
        """Factor on layer l's contrastive gradient (1 unless the statistic pools positions)."""
        return 1.0

    def forward(self, x: Tensor) -> Tensor:
        """f(I; w) per image, shape [B]."""
        return torch.stack(list(self.layer_energies(self.features(x)).values())).sum(0)

    def contrastive_loss(self, feats_obs: dict[str, Tensor], feats_syn: dict[str, Tensor]) -> Tensor:
        """A loss whose gradient w.r.t. w is minus the learning direction of eq. (13)/(14)/(27).

            loss = sum_l (mean_syn scale_l f_l - mean_obs scale_l f_l)

        so that a plain SGD step with learning rate gamma is exactly
        w <- w + gamma * (mean_obs scale_l df_l/dw - mean_syn scale_l df_l/dw).
        The scale is taken on each side, so a synthesized canvas larger than the observed
        image still compares spatial means (eq. 14).
        """
        f_obs, f_syn = self.layer_energies(feats_obs), self.layer_energies(feats_syn)
        terms = [
            self.gradient_scale(layer, feats_syn) * f_syn[layer].float().mean()
            - self.gradient_scale(layer, feats_obs) * f_obs[layer].float().mean()
            for layer in f_obs
        ]
        return torch.stack(terms).sum()
