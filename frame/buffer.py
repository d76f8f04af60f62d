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
                image, the paper's "cold start" of Section 9; with ``grid`` g > 1, the image's
                g x g block means instead (its 1 x 1 thumbnail is the paper's start; a coarser
                thumbnail keeps each face's lighting, so cold starts differ in more than
                brightness); with ``paired``, chain i starts from image i of the batch (one chain
                per training image, Section 9) rather than from a random one.
The first starts of persistent ``data_mean`` and unpaired ``image_mean`` chains come from all the
data module's images (``setup``), not from one process's batch, so a run on several processes
starts where the same run on one does.
``reinit_fraction`` re-initialises that fraction of the chains before every iteration
(1.0 = cold start every iteration, Section 9; 0.0 = pure warm start, Algorithm 1).

The buffer also owns the chains' random stream (Langevin noise, re-initialisation, recovery
masks): a generator apart from torch's global one (which data loading also draws from),
seeded from the run's seed and saved in the state dict, so a resumed run draws exactly the
noise the uninterrupted run would have drawn. Every process of a DDP run holds the same
stream and keeps the rows of its own chains (``frame.sampling.draw_noise``).

The model sees the chains through two calls, its one seam with where chains come from: ``starts``
gives a process its share of the chains for an iteration (which pixels move, which rows of all
processes' chains they are, the random stream) and ``keep`` takes the chains back after the
Langevin steps. Training for recovery is another source with the same two calls
(``frame.recovery.RecoveryChains``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from frame.input_space import InputSpace

CHAIN_INITS = ("zeros", "noise", "data_mean", "image_mean")


class Starts(NamedTuple):
    """A process's chains at the start of an iteration's Langevin steps."""

    chains: Tensor
    #: the pixels that move (True), None: all
    mask: Tensor | None
    #: ``(first, total)``: the rows of all processes' chains these are (``frame.sampling.draw_noise``)
    rows: tuple[int, int]
    generator: torch.Generator


class ChainBuffer(nn.Module):
    """n~ persistent chains of shape [C, H, W] and their random stream, saved in checkpoints.

    Args:
        n_chains: n~, the number of chains.
        shape: [C, H, W] of one chain (``FrameModel`` passes the input space's channels and
            the canvas).
        init: how a chain starts (module docstring).
        reinit_fraction: fraction of the chains re-initialised before every iteration.
    """

    def __init__(
        self,
        n_chains: int,
        shape: tuple[int, int, int],
        init: str = "zeros",
        reinit_fraction: float = 0.0,
        grid: int = 1,
        paired: bool = False,
    ) -> None:
        super().__init__()
        if int(n_chains) != n_chains or n_chains < 1:
            raise ValueError(f"model.buffer.n_chains must be a positive integer, got {n_chains}")
        if init not in CHAIN_INITS:
            raise ValueError(f"model.buffer.init must be one of {CHAIN_INITS}, got {init!r}")
        if not 0.0 <= reinit_fraction <= 1.0:
            raise ValueError(f"model.buffer.reinit_fraction must be in [0, 1], got {reinit_fraction}")
        if int(grid) != grid or not 1 <= grid <= min(shape[-2:]):
            raise ValueError(f"model.buffer.grid must be an integer between 1 and the canvas side, got {grid}")
        self.init = init
        self.grid = int(grid)
        self.paired = bool(paired)
        self.reinit_fraction = float(reinit_fraction)
        self.register_buffer("chains", torch.zeros(int(n_chains), *shape))
        self.register_buffer("initialised", torch.tensor(False))
        self._generator: torch.Generator | None = None
        self._saved_generator: dict | None = None
        #: the data module's images in [0, 1] (``setup``): the first starts of ``image_mean`` and ``data_mean``
        self._images: Tensor | None = None

    @property
    def n_chains(self) -> int:
        return self.chains.shape[0]

    def generator(self, device: torch.device | str | None = None) -> torch.Generator:
        """The chains' own random stream on `device` (default: the chains' device)."""
        device = torch.device(device or self.chains.device)
        if self._generator is None or self._generator.device.type != device.type:
            generator = torch.Generator(device=device)
            saved = self._saved_generator
            if saved is not None and saved["device"] == device.type:
                generator.set_state(saved["state"])
            else:
                generator.manual_seed(torch.initial_seed())
            self._generator = generator
        return self._generator

    def get_extra_state(self) -> dict | None:
        if self._generator is None:
            return self._saved_generator
        return {"device": self._generator.device.type, "state": self._generator.get_state()}

    def set_extra_state(self, state: dict | None) -> None:
        self._saved_generator, self._generator = state, None

    def fresh(self, n: int, observed: Tensor, space: InputSpace, rows: Tensor | None = None) -> Tensor:
        """`n` newly initialised chains; `observed` is a batch of observed images in input space.

        ``image_mean`` chains are flat in pixel space (the paper's constant image), also when
        the input space subtracts a mean image. With ``paired``, `rows` are the chains' indices
        in the buffer (default: all of them) and chain i starts from observed image i.
        """
        generator = self.generator(observed.device)
        shape = (n, *self.chains.shape[1:])
        device, dtype = self.chains.device, self.chains.dtype
        if self.init == "zeros":
            return torch.zeros(shape, device=device, dtype=dtype)
        if self.init == "noise":
            return space.to_input(torch.rand(shape, device=device, dtype=dtype, generator=generator))
        if self.init == "data_mean":
            mean = observed.float().mean(0, keepdim=True)
            return _fit(mean, shape[-2:]).expand(shape).clone()
        # image_mean: each chain starts at the per-channel (block) means of one training image.
        if self.paired:
            self._check_paired(observed)
            pick = torch.arange(n, device=observed.device) if rows is None else rows.to(observed.device)
        else:
            pick = torch.randint(observed.shape[0], (n,), device=device, generator=generator).to(observed.device)
        images = space.to_images(observed.float()[pick])
        thumb = torch.nn.functional.adaptive_avg_pool2d(images, self.grid)
        flat = torch.nn.functional.interpolate(thumb, size=tuple(shape[-2:]), mode="bilinear", align_corners=False)
        return space.to_input(flat).to(device=device, dtype=dtype).expand(shape).clone()

    @torch.no_grad()
    def refresh(self, observed: Tensor, space: InputSpace) -> None:
        """Initialise all chains on first use, then re-initialise `reinit_fraction` of them."""
        if not bool(self.initialised):
            self.chains.copy_(self.fresh(self.n_chains, self._first_source(observed, space), space))
            self.initialised.fill_(True)
            return
        n = math.ceil(self.reinit_fraction * self.n_chains) if self.reinit_fraction > 0 else 0
        if n == 0:
            return
        idx = torch.randperm(self.n_chains, device=self.chains.device, generator=self.generator(observed.device))[:n]
        self.chains[idx] = self.fresh(n, observed, space, rows=idx)

    def _first_source(self, observed: Tensor, space: InputSpace) -> Tensor:
        """What persistent chains' first starts are drawn from: all the data module's images where it
        holds them (a process's batch is its shard of them: drawn from it, a run on several processes
        would start elsewhere than the same run on one), else the batch; paired starts and chains
        re-initialised every iteration (cold starts) take the batch."""
        if self._images is None or self.paired or self.reinit_fraction > 0 or self.init not in ("image_mean", "data_mean"):
            return observed
        return space.to_input(self._images.to(device=observed.device, dtype=torch.float32))

    def _check_paired(self, observed: Tensor) -> None:
        """Paired starts need one observed image per chain; anything else is a config error."""
        if observed.shape[0] != self.n_chains:
            raise ValueError(
                f"model.buffer.paired=true starts chain i from image i of the batch, so it needs "
                f"model.buffer.n_chains ({self.n_chains}) equal to the batch size ({observed.shape[0]}): "
                f"set data.batch_size={self.n_chains} or model.buffer.paired=false"
            )

    @torch.no_grad()
    def update(self, chains: Tensor) -> None:
        """Store the chains after this iteration's Langevin steps."""
        self.chains.copy_(chains)

    # -- the model's seam ------------------------------------------------------------------------
    def setup(self, images: Tensor | None, world_size: int) -> None:
        """Before fitting, with the data module's images (None: it holds none): each of the
        `world_size` processes runs an equal share of the chains."""
        self._images = images if isinstance(images, Tensor) else None
        self.check_shares(world_size)

    def check_shares(self, world_size: int) -> None:
        """Each of the `world_size` processes runs an equal share of the chains. ``frame.run.fit``
        asks before any process is started, so that a run that cannot share them fails at once."""
        if self.n_chains % world_size:
            raise ValueError(
                f"model.buffer.n_chains={self.n_chains} does not divide by the {world_size} "
                "processes of this run: each process runs an equal share of the chains"
            )

    def starts(self, observed: Tensor, space: InputSpace, rank: int = 0, world_size: int = 1) -> Starts:
        """Step 3 of Algorithm 1 for process `rank` of `world_size`: the chains (re)initialised
        (``refresh``) and this process's share of them; every pixel moves."""
        generator = self.generator(observed.device)
        self.refresh(observed, space)
        size = self.n_chains // world_size
        return Starts(self.chains[rank * size : (rank + 1) * size], None, (rank * size, self.n_chains), generator)

    def keep(self, chains: Tensor, gather: Callable[[Tensor], Tensor] | None = None) -> None:
        """Takes this process's chains back after the Langevin steps. Every process keeps the
        whole buffer, so checkpoints hold all chains: `gather` stacks the processes' shares."""
        self.update(gather(chains) if gather is not None else chains)


def _fit(image: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    """Resizes a [1, C, h, w] image to `size` (for a canvas larger than the observed image)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return torch.nn.functional.interpolate(image, size=tuple(size), mode="bilinear", align_corners=False)
