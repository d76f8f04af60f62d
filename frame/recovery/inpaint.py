"""Recover missing pixels with a trained model (paper, Section 9, Table 2).

The missing pixels I_M are sampled from p(I_M | I_notM; w) by the model's own Langevin sampler
(eq. 16) with the observed pixels I_notM held fixed. ``inpaint_image`` recovers one image of
any size (the command ``frame-inpaint`` calls it for every file):

1. it is resized (whole image, aspect not kept) to the model's canvas, and its mask with it:
   a canvas pixel counts as missing as soon as any missing pixel falls into it;
2. the missing canvas pixels start at the mean of the observed ones (the conditional "cold
   start") or at their harmonic interpolation (``--start harmonic``; the default is the start
   the model was trained for recovery with) and ``--steps`` Langevin steps of ``--step-size``
   (defaults: ``recovery_steps``, ``recovery_step_size``) move only them;
   with ``n_chains=K`` K chains are run and their images averaged;
3. the recovered canvas is resized back to the image's size and **only the missing pixels**
   are pasted into the original: every observed pixel of the output is the input's, exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from frame.recovery.chains import recovery_of
from frame.recovery.masks import fill_missing, start_chains
from frame.synthesis import canvas_side

if TYPE_CHECKING:
    from frame.models.base import FrameModel


def inpaint(
    model: FrameModel,
    images: Tensor,
    missing: Tensor,
    n_steps: int | None = None,
    n_chains: int = 1,
    noise: bool | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    start: str | None = None,
    step_size: float | None = None,
    bank: Tensor | None = None,
) -> Tensor:
    """Samples the missing pixels of ``images`` from p(I_M | I_notM; w).

    Args:
        model: any trained ``FrameModel``.
        images: ``[B, 3, H, W]`` RGB in [0, 1], at a size the model accepts (its canvas).
        missing: ``[B, 1, H, W]`` (or broadcastable) bool, True = missing.
        n_steps: Langevin steps (default: ``recovery_steps(model)``).
        n_chains: independent chains per image whose images are averaged.
        noise: override the sampler's noise term (``False``: gradient descent on U, the mode).
        generator: source of the Langevin noise.
        start: ``mean``, ``harmonic`` or ``exemplars`` (``frame.recovery.masks.start_chains``);
            default: the start the model was trained for recovery with (``model.buffer.start``),
            else ``mean``.
        step_size: the Langevin step size (default: ``recovery_step_size(model)``).
        bank: for ``exemplars``: the images to take the nearest from, ``[N, 3, H, W]`` in [0, 1]
            at the canvas size (the model's training images: the checkpoint does not hold them).
    Returns:
        ``[B, 3, H, W]`` in [0, 1]; equal to ``images`` on every observed pixel, exactly.
    """
    if n_chains < 1:
        raise ValueError(f"n_chains must be >= 1, got {n_chains}")
    device = model.buffer.chains.device
    images = images.to(device=device, dtype=torch.float32)
    missing = missing.to(device=device, dtype=torch.bool).expand(images.shape[0], 1, *images.shape[-2:])
    if start is None:
        start = recovery_start(model)
    if n_steps is None:
        n_steps = recovery_steps(model)
    start = start_chains(model.to_input(images), missing, start, model.input_space, bank)
    if step_size is None:
        step_size = recovery_step_size(model)
    total = torch.zeros_like(images)
    for _ in range(n_chains):
        chains = model.langevin(start, mask=missing, n_steps=n_steps, generator=generator, progress=progress,
                                step_size=step_size, noise=noise)
        total += model.to_images(chains).detach()
    return torch.where(missing, total / n_chains, images)


def recovery_start(model: FrameModel) -> str:
    """Where a recovery's holes start unless told: the start the model was trained for recovery
    with (``model.buffer.start``), else the paper's cold start, ``mean``."""
    recovery = recovery_of(model)
    return recovery.start if recovery is not None else "mean"


def recovery_steps(model: FrameModel) -> int:
    """Langevin steps a recovery takes unless told: the model's ``recovery.test_steps`` if it
    was trained for recovery with one, else its L."""
    steps = recovery.test_steps if (recovery := recovery_of(model)) is not None else None
    return model.sampler.n_steps if steps is None else int(steps)


def recovery_step_size(model: FrameModel) -> float:
    """Langevin step size a recovery takes unless told: the model's ``recovery.test_step_size`` if
    it was trained for recovery with one, else its sampler's."""
    size = recovery.test_step_size if (recovery := recovery_of(model)) is not None else None
    return float(model.sampler.step_size if size is None else size)


def resize(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Antialiased bilinear resize of ``[B, C, h, w]`` images to `size` (a side, or (H, W);
    identity at the same size)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_mask(missing: Tensor, size: int | tuple[int, int]) -> Tensor:
    """A pixel of the resized mask is missing when any missing pixel falls into it."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(missing.shape[-2:]) == size:
        return missing.bool()
    h, w = missing.shape[-2:]
    m = missing.float()
    if size[0] >= h and size[1] >= w:  # upscaling: each target pixel inside one source pixel
        return F.interpolate(m, size=size, mode="nearest") > 0
    return F.adaptive_max_pool2d(m, size) > 0 if size[0] <= h and size[1] <= w else resize(m, size) > 0


def inpaint_image(
    model: FrameModel,
    image: Tensor,
    missing: Tensor,
    grayscale: bool = False,
    **kwargs,
) -> tuple[Tensor, Tensor]:
    """One image of any size: ``image`` [3, h, w] in [0, 1], ``missing`` [1, h, w] bool.

    Returns (recovered [3, h, w] with the input's pixels outside the mask, the recovered
    canvas [3, H, W] at the model's size, for display).
    """
    size = canvas_side(model)
    # whatever the missing pixels hold (a painted hole, say) must not leak into the resized
    # observed pixels next to the hole: they are set to the observed mean before resizing
    small = resize(fill_missing(image[None], missing[None]), size).clamp(0, 1)
    if grayscale:
        small = small.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    small_missing = resize_mask(missing[None], size)
    canvas = inpaint(model, small, small_missing, **kwargs)[0].cpu()
    back = resize(canvas[None], tuple(image.shape[-2:]))[0].clamp(0, 1)
    if grayscale:
        back = back.mean(dim=0, keepdim=True).expand(3, -1, -1)
    return torch.where(missing.bool(), back, image), canvas
