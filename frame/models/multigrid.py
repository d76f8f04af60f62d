"""Algorithm 1 with multigrid sampling (Gao, Lu, Zhou, Zhu, Wu, CVPR 2018).

The model is a ``MultigridEnergy``: one net f_s per scale (e.g. 4, 16, 64 px). Learning is
Algorithm 1 of ``FrameModel`` with step 5 run coarse to fine:

    3. the chains start as the model's buffer says (the multigrid paper: the 1 x 1 mean of a
       training image, one chain per image of the minibatch: ``init=image_mean``, ``grid=1``,
       ``paired=true``, ``reinit_fraction=1``), reduced to the coarsest scale by block means;
    5. L Langevin steps (eq. 16) on p_1 (the coarsest scale); the chains, enlarged to the next
       scale (``MultigridEnergy.upsample``), start L steps on p_2; ... up to the finest scale;
    6. the synthesized statistics of each scale are those of its own chains, the observed ones
       those of the block means of the training images at that scale;
    7. each w_s moves by eq. (27) on its own observed and synthesized images: the shared
       contrastive loss sums the scales' losses (``MultigridEnergy``).

Sampling a trained model (``frame.synthesis``, ``frame-sample``, ``frame-eval``) and recovery
(``frame.recovery``) go through ``langevin``, so they sample coarse to fine too: a start of the
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
from frame.models.base import FrameModel
from frame.sampling import LangevinSampler


class MultigridModel(FrameModel):
    """``FrameModel`` whose chains run coarse to fine over the scales of a ``MultigridEnergy``.

    Args:
        energy: the ``MultigridEnergy`` (one net per scale; the finest is ``image_size``).
        sampler: the Langevin sampler (eq. 16), run for its L steps at every scale.
        **kwargs: as ``FrameModel`` (buffer, image_size, optimizer, scheduler, ...).
    """

    def __init__(self, energy: MultigridEnergy, sampler: LangevinSampler, **kwargs: Any) -> None:
        if not isinstance(energy, MultigridEnergy):
            raise ValueError(f"model.energy must build a frame.energies.MultigridEnergy for MultigridModel, got {type(energy).__name__}")
        super().__init__(energy, sampler, **kwargs)

    def synthesize(self, observed: Tensor) -> list[Tensor]:
        """Steps 3 and 5 at every scale; returns the chains of every scale, coarse first."""
        start, mask, rows, generator = self.buffer.starts(observed, self.input_space, self.global_rank, self.world_size)
        chains = self.coarse_to_fine(start, mask=mask, generator=generator, rows=rows)
        self.buffer.keep(chains[-1], self.gather)
        return chains

    def features(self, x: Tensor | Sequence[Tensor]) -> dict[str, Tensor]:
        """Every scale's features: of the block means of observed images `x` (finest scale),
        or of the chains of every scale (``synthesize``)."""
        levels = self.energy.pyramid(x) if isinstance(x, Tensor) else x
        with self.sampler.autocast(levels[0].device):
            return self.energy.features([self.sampler.prepare(level) for level in levels])

    def langevin(self, start: Tensor, mask: Tensor | None = None, **options: Any) -> Tensor:
        """The finest chains of ``coarse_to_fine`` (what sampling and recovery show); `options` as
        ``FrameModel.langevin``."""
        return self.coarse_to_fine(start, mask, **options)[-1]

    def coarse_to_fine(
        self,
        start: Tensor,
        mask: Tensor | None = None,
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
        rows: tuple[int, int] | None = None,
        progress: bool = False,
        step_size: float | None = None,
        noise: bool | None = None,
    ) -> list[Tensor]:
        """Langevin (eq. 16) at every scale, coarse first, from `start` (finest input space).

        The coarsest chains start at the block means of `start`; every finer scale starts at the
        previous scale's chains, enlarged. With a `mask` (True = moves, finest size), a scale's
        known pixels are the block means of `start` and only its blocks holding a missing pixel
        move. Returns the chains of every scale.
        """
        energy: MultigridEnergy = self.energy
        known = energy.pyramid(start)
        masks = energy.mask_pyramid(mask) if mask is not None else [None] * len(known)
        chains: list[Tensor] = []
        for s, net in enumerate(energy.scales):
            x = known[s] if s == 0 else energy.enlarge(chains[-1], s)
            if masks[s] is not None:
                x = torch.where(masks[s], x, known[s])
            bounds = net.input_space.bounds(x.device, x.dtype)
            chains.append(self.sampler.sample(
                net, x, mask=masks[s], bounds=bounds, n_steps=n_steps, progress=progress, generator=generator, rows=rows,
                step_size=step_size, noise=noise,
            ))
        return chains
