"""Multigrid sampling (Gao, Lu, Zhou, Zhu, Wu, CVPR 2018): Langevin coarse to fine.

The energy is a ``MultigridEnergy``: one net f_s per scale (e.g. 4, 16, 64 px). Learning is
Algorithm 1 of ``FrameModel`` with step 5 run coarse to fine by this sampler:

    3. the chains start as the model's buffer says (the multigrid paper: the 1 x 1 mean of a
       training image, one chain per image of the minibatch: ``init=image_mean``, ``grid=1``,
       ``paired=true``, ``reinit_fraction=1``), reduced to the coarsest scale by block means;
    5. L Langevin steps (eq. 16) on p_1 (the coarsest scale); the chains, enlarged to the next
       scale (``MultigridEnergy.upsample``), start L steps on p_2; ... up to the finest scale;
    6. the synthesized statistics of each scale are those of its own chains (``synthesize``
       returns them all), the observed ones those of the block means of the training images at
       that scale (``features`` of an image);
    7. each w_s moves by eq. (27) on its own observed and synthesized images: the shared
       contrastive loss sums the scales' losses (``MultigridEnergy``).

Sampling a trained model (``frame.synthesis``, ``frame-sample``, ``frame-eval``) and recovery
(``frame.recovery``) go through ``sample``, so they sample coarse to fine too: a start of the
finest size is reduced to the coarsest scale, and with a mask every scale keeps the pixels it
knows at its own resolution (the block means of the known pixels), moving only the blocks that
hold a missing pixel. The buffer holds the finest chains (checkpoints, sample grids).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from frame.energies.multigrid import MultigridEnergy
from frame.sampling import LangevinSampler


def multigrid(energy: Any) -> MultigridEnergy:
    if not isinstance(energy, MultigridEnergy):
        raise ValueError(f"model.sampler: CoarseToFineSampler needs model.energy to build a frame.energies.MultigridEnergy, got {type(energy).__name__}")
    return energy


class CoarseToFineSampler(LangevinSampler):
    """``LangevinSampler`` run for its L steps at every scale of a ``MultigridEnergy``, coarse
    first; its arguments are ``LangevinSampler``'s."""

    def sample(self, energy: MultigridEnergy, x: Tensor, mask: Tensor | None = None, **options: Any) -> Tensor:
        """The finest chains of ``synthesize`` (what sampling and recovery show)."""
        return self.synthesize(energy, x, mask, **options)[-1]

    def finest(self, synthesized: list[Tensor]) -> Tensor:
        return synthesized[-1]

    def features(self, energy: MultigridEnergy, x: Tensor | Sequence[Tensor]) -> dict[str, Tensor]:
        """Every scale's features: of the block means of images `x` (finest scale), or of the
        chains of every scale (``synthesize``)."""
        levels = multigrid(energy).pyramid(x) if isinstance(x, Tensor) else x
        with self.autocast(levels[0].device):
            return energy.features([self.prepare(level) for level in levels])

    def synthesize(
        self, energy: MultigridEnergy, x: Tensor, mask: Tensor | None = None, bounds: Any = None, **options: Any
    ) -> list[Tensor]:
        """Langevin (eq. 16) at every scale, coarse first, from `x` (finest input space).

        The coarsest chains start at the block means of `x`; every finer scale starts at the
        previous scale's chains, enlarged. With a `mask` (True = moves, finest size), a scale's
        known pixels are the block means of `x` and only its blocks holding a missing pixel
        move. Each scale clamps to its own input space's bounds (`bounds` of the finest is not
        used); `options` as ``LangevinSampler.sample``. Returns the chains of every scale.
        """
        known = multigrid(energy).pyramid(x)
        masks = energy.mask_pyramid(mask) if mask is not None else [None] * len(known)
        chains: list[Tensor] = []
        for s, net in enumerate(energy.scales):
            start = known[s] if s == 0 else energy.enlarge(chains[-1], s)
            if masks[s] is not None:
                start = torch.where(masks[s], start, known[s])
            bounds = net.input_space.bounds(start.device, start.dtype)
            chains.append(self.langevin(net, start, mask=masks[s], bounds=bounds, **options))
        return chains

    def langevin(self, net: Any, x: Tensor, **options: Any) -> Tensor:
        """L Langevin steps (eq. 16) at one scale: ``LangevinSampler.sample``."""
        return super().sample(net, x, **options)
