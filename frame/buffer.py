"""The persistent Langevin chains {I~_i, i = 1..n~} of Algorithm 1.

The chains live in the network's input space and persist across learning iterations
("warm start", Section 5.2). They are registered buffers, so they travel with the module's
``state_dict`` into every Lightning checkpoint and a resumed run continues the same chains.

Initialisations (``init``):
    zeros       I~ = 0, i.e. the mean image in the Caffe input space (Algorithm 1, step 3, and
                the authors' code);
    noise       a uniform white-noise image in [0, 1] mapped to input space;
    data_mean   the mean of the observed images;
    image_mean  a constant image at the average intensity of a randomly drawn training
                image, the paper's "cold start" of Section 9.
``reinit_fraction`` re-initialises that fraction of the chains before every iteration
(1.0 = cold start every iteration, Section 9; 0.0 = pure warm start, Algorithm 1).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from frame.energies.base import InputSpace

CHAIN_INITS = ("zeros", "noise", "data_mean", "image_mean")


class ChainBuffer(nn.Module):
    """n~ persistent chains of shape [C, H, W], saved in checkpoints."""

    def __init__(
        self,
        n_chains: int,
        shape: tuple[int, int, int],
        init: str = "zeros",
        reinit_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        if int(n_chains) != n_chains or n_chains < 1:
            raise ValueError(f"model.n_chains must be a positive integer, got {n_chains}")
        if init not in CHAIN_INITS:
            raise ValueError(f"model.chains.init must be one of {CHAIN_INITS}, got {init!r}")
        if not 0.0 <= reinit_fraction <= 1.0:
            raise ValueError(f"model.chains.reinit_fraction must be in [0, 1], got {reinit_fraction}")
        self.init = init
        self.reinit_fraction = float(reinit_fraction)
        self.register_buffer("chains", torch.zeros(int(n_chains), *shape))
        self.register_buffer("initialised", torch.tensor(False))

    @property
    def n_chains(self) -> int:
        return self.chains.shape[0]

    def fresh(self, n: int, observed: Tensor, space: InputSpace, generator: torch.Generator | None = None) -> Tensor:
        """`n` newly initialised chains; `observed` is a batch of observed images in input space.

        `space` maps images (RGB in [0, 1]) to input space and back; ``image_mean`` chains are
        flat in pixel space (the paper's constant image), also when the input space subtracts a
        mean image.
        """
        shape = (n, *self.chains.shape[1:])
        device, dtype = self.chains.device, self.chains.dtype
        if self.init == "zeros":
            return torch.zeros(shape, device=device, dtype=dtype)
        if self.init == "noise":
            return space.to_input(torch.rand(shape, device=device, dtype=dtype, generator=generator))
        if self.init == "data_mean":
            mean = observed.float().mean(0, keepdim=True)
            return _fit(mean, shape[-2:]).expand(shape).clone()
        # image_mean: each chain starts flat at the per-channel mean of one training image.
        pick = torch.randint(observed.shape[0], (n,), device=device, generator=generator).to(observed.device)
        images = space.from_input(observed.float()[pick])
        flat = images.mean(dim=(-2, -1), keepdim=True).expand(-1, -1, *shape[-2:])
        return space.to_input(flat).to(device=device, dtype=dtype).expand(shape).clone()

    @torch.no_grad()
    def refresh(self, observed: Tensor, space: InputSpace, generator: torch.Generator | None = None) -> None:
        """Initialise all chains on first use, then re-initialise `reinit_fraction` of them."""
        if not bool(self.initialised):
            self.chains.copy_(self.fresh(self.n_chains, observed, space, generator))
            self.initialised.fill_(True)
            return
        n = math.ceil(self.reinit_fraction * self.n_chains) if self.reinit_fraction > 0 else 0
        if n == 0:
            return
        idx = torch.randperm(self.n_chains, device=self.chains.device, generator=generator)[:n]
        self.chains[idx] = self.fresh(n, observed, space, generator)

    @torch.no_grad()
    def update(self, chains: Tensor) -> None:
        """Store the chains after this iteration's Langevin steps."""
        self.chains.copy_(chains)


def _fit(image: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    """Resizes a [1, C, h, w] image to `size` (for a canvas larger than the observed image)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return torch.nn.functional.interpolate(image, size=tuple(size), mode="bilinear", align_corners=False)
