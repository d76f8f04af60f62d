"""Drawing new images from a trained model: where the chains start, then Langevin (eq. 16).

A trained model is a density p(I; w) (eq. 8); its images are the states of Langevin chains
run on it (eq. 16). What they look like depends on where the chains start (``INITS``):

``buffer``  continue the persistent chains saved in the checkpoint: training warm-starts
            them (Section 5.2), so this is the model's own sampling;
``flat``    a constant image at the mean intensity of q(I)'s mean, every chain alike
            (Section 9's cold start);
``zeros``   x = 0, the mean of q(I) (Algorithm 1, step 3);
``noise``   uniform noise in [0, 1], mapped to the input space.

From ``zeros``, ``noise`` or ``flat`` the chains show the long-run behaviour of the learned
density, which can differ from the warm-started chains: give many more steps than training.
``frame-sample`` draws a grid with this module; evaluation reuses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from frame.choices import INITS

if TYPE_CHECKING:
    from frame.models.base import FrameModel


def canvas_side(model: FrameModel, size: int | None = None) -> int:
    """The model's image side: its training canvas (what sampling draws, what images are
    resized to for scoring and recovery), or a `size` checked against the energy."""
    saved = int(model.buffer.chains.shape[-1])
    if size is None or size == saved:
        return saved
    if model.energy.positional:
        raise ValueError(
            f"size {size}: {type(model.energy).__name__}'s weights are tied to positions, so its "
            f"images are {saved}px; only models of stationary images take a larger canvas"
        )
    model.energy.check_image_size(int(size))
    return int(size)


def initial_chains(
    model: FrameModel, init: str, n: int, size: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """``n`` chains ``[n, C, size, size]`` in the model's input space, started as ``init`` says."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if n < 1:
        raise ValueError(f"the number of images must be >= 1, got {n}")
    saved = model.buffer.chains
    side = canvas_side(model, size)
    if init == "buffer":
        if side != saved.shape[-1]:
            raise ValueError(f"init buffer continues the saved {saved.shape[-1]}px chains: a {side}px canvas needs another init")
        return saved[torch.arange(n, device=saved.device) % saved.shape[0]].clone()
    shape = (n, saved.shape[1], side, side)
    if init == "zeros":
        return torch.zeros(shape, device=saved.device)
    if init == "flat":  # the mean image of q(I) shown as an image, then its mean intensity everywhere
        mean_image = model.to_images(torch.zeros(1, *saved.shape[1:], device=saved.device))
        level = mean_image.mean(dim=(-2, -1), keepdim=True).expand(n, -1, side, side)
        return model.to_input(level)
    return model.to_input(torch.rand(shape, device=saved.device, generator=generator))


def draw(
    model: FrameModel,
    n: int,
    init: str = "buffer",
    n_steps: int | None = None,
    size: int | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Tensor:
    """``n`` chains after ``n_steps`` Langevin steps (default: the model's L), ``batch_size``
    chains at a time; returns them in input space (``model.to_images`` shows them)."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    start = initial_chains(model, init, n, size, generator)
    step = batch_size or n
    return torch.cat([
        model.langevin(start[i : i + step], n_steps=n_steps, generator=generator, progress=progress)
        for i in range(0, n, step)
    ])
