"""Square masks for image recovery (paper, Section 9) and the recovery-training option.

A mask is a bool tensor ``[B, 1, H, W]`` with **True = missing** (the pixels the conditional
Langevin chain moves, as ``LangevinSampler.sample(mask=...)`` expects); the others are the
observed pixels I_notM, kept fixed.

``RecoveryMasks`` is what ``RecoveryChains`` (``model.buffer``, ``frame.recovery.chains``) draws: on every
training iteration it places ``n_masks`` random squares of side ``mask_size`` on each training
image (``masked_chains``), and the model synthesizes by sampling p(I_M | I_notM; w) from that
masked image
(Section 9: "we also randomly place a mask M on each fully observed training image I, and run
Langevin dynamics by fixing I_notM to obtain the synthesized image").
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from frame.choices import STARTS
from frame.recovery.baselines import harmonic, nearest_exemplars
from frame.sampling import checked_step_size, checked_steps

if TYPE_CHECKING:
    from frame.buffer import ChainBuffer
    from frame.input_space import InputSpace

PLACEMENTS = ("random", "center")
#: the k of the ``exemplars`` start (the bench's data-driven row uses the same by default)
EXEMPLARS = 8


def mask_side(mask_size: int | float, side: int) -> int:
    """Side in pixels of a square: an int is pixels, a float in (0, 1] a fraction of ``side``."""
    if isinstance(mask_size, bool) or not isinstance(mask_size, (int, float)):
        raise ValueError(f"mask_size must be an int (pixels) or a float in (0, 1] (fraction), got {mask_size!r}")
    if isinstance(mask_size, float):
        if 0 < mask_size <= 1:
            return max(1, round(mask_size * side))
        if not mask_size.is_integer():
            raise ValueError(f"mask_size must be whole pixels or a fraction in (0, 1], got {mask_size}")
    pixels = int(mask_size)
    if pixels < 1 or pixels > side:
        raise ValueError(f"mask_size {pixels} must be between 1 and the image side {side}")
    return pixels


def square_masks(
    n: int,
    size: tuple[int, int],
    mask_size: int | float,
    n_masks: int = 1,
    placement: str = "random",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` masks ``[n, 1, H, W]`` (True = missing), each the union of ``n_masks`` squares.

    ``placement="random"`` puts each square uniformly at random fully inside the image (the
    paper's test protocol); ``"center"`` puts it in the middle (then ``n_masks`` is moot).
    Positions are drawn from ``generator`` (on ``device``), so a seeded generator gives the
    same masks every time.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"mask placement must be one of {PLACEMENTS}, got {placement!r}")
    if int(n_masks) != n_masks or n_masks < 1:
        raise ValueError(f"n_masks must be a positive integer, got {n_masks}")
    height, width = int(size[0]), int(size[1])
    side = mask_side(mask_size, min(height, width))
    device = torch.device(device) if device is not None else (generator.device if generator is not None else None)
    if placement == "center":
        top = torch.full((n, 1), (height - side) // 2, device=device)
        left = torch.full((n, 1), (width - side) // 2, device=device)
    else:
        top = torch.randint(height - side + 1, (n, int(n_masks)), generator=generator, device=device)
        left = torch.randint(width - side + 1, (n, int(n_masks)), generator=generator, device=device)
    rows = torch.arange(height, device=device).view(1, 1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, 1, width)
    top, left = top[..., None, None], left[..., None, None]  # [n, k, 1, 1]
    inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    return inside.any(dim=1, keepdim=True)


def fill_missing(x: Tensor, missing: Tensor) -> Tensor:
    """Starts the conditional chain: missing pixels set to the mean of the image's observed ones.

    The conditional counterpart of Section 9's "cold start" (a constant image at the average
    intensity of the training image); per image and channel. An image with no observed pixel
    starts at its own mean (the caller's values), i.e. nothing is changed.
    """
    missing = missing.to(device=x.device, dtype=torch.bool).expand_as(x)
    observed = (~missing).to(x.dtype)
    count = observed.sum(dim=(-2, -1), keepdim=True)
    mean = (x * observed).sum(dim=(-2, -1), keepdim=True) / count.clamp_min(1)
    mean = torch.where(count > 0, mean, x.mean(dim=(-2, -1), keepdim=True))
    return torch.where(missing, mean.expand_as(x), x)


def harmonic_fill(images: Tensor, missing: Tensor) -> Tensor:
    """Missing pixels by the harmonic interpolation of the observed ones (MRF-l2, the Laplace
    equation on the hole, ``frame.recovery.baselines.harmonic``); ``images`` [B, C, H, W]."""
    missing = missing.to(torch.bool).expand(images.shape[0], 1, *images.shape[-2:])
    filled = [
        torch.from_numpy(harmonic(image.permute(1, 2, 0).double().cpu().numpy(), hole[0].cpu().numpy())).permute(2, 0, 1)
        for image, hole in zip(images, missing)
    ]
    return torch.stack(filled).to(device=images.device, dtype=images.dtype)


def exemplars_fill(images: Tensor, missing: Tensor, bank: Tensor | None) -> Tensor:
    """``nearest_exemplars`` over ``bank`` (the training images, [N, 3 or 1, H, W] in [0, 1]),
    taken to the channels and canvas of ``images``."""
    if bank is None:
        raise ValueError(
            "start='exemplars' needs a bank of images to take the nearest from (the training images: "
            "a data module that holds them in training, --bank in frame-inpaint)"
        )
    if images.shape[1] == 1 and bank.shape[1] == 3:
        bank = bank.mean(1, keepdim=True)
    return nearest_exemplars(images, missing, bank, min(EXEMPLARS, len(bank)))


def start_chains(
    x: Tensor,
    missing: Tensor,
    start: str = "mean",
    space: InputSpace | None = None,
    bank: Tensor | None = None,
) -> Tensor:
    """Where the conditional chains start: the observed pixels of ``x`` (input space) and

    ``mean``      the missing ones at the mean of the observed ones, in input space
                  (``fill_missing``: the conditional "cold start");
    ``harmonic``  the missing ones harmonically interpolated in image space ([0, 1], via
                  ``space``: the model's input space), so that the chain refines the MRF-l2 recovery
                  rather than starting from a flat hole.
    ``exemplars`` the missing ones from the ``EXEMPLARS`` images of ``bank`` ([N, C, H, W] in
                  [0, 1]: the training images) nearest on the observed pixels, averaged and
                  shifted to the hole's ring (``frame.recovery.baselines.nearest_exemplars``, the
                  bench's data-driven row); the image itself is left out of the bank.
    """
    if start not in STARTS:
        raise ValueError(f"the recovery start must be one of {STARTS}, got {start!r}")
    if start == "mean":
        return fill_missing(x, missing)
    if space is None:
        raise ValueError(f"start={start!r} needs the model's input space")
    images = space.to_images(x.float()).clamp(0, 1)
    if x.shape[1] == 1:  # grey chains: to_images repeats the grey in RGB; solve once, not 3 times
        images = images[:, :1]
    if start == "harmonic":
        filled = space.to_input(harmonic_fill(images, missing))
    else:
        filled = space.to_input(exemplars_fill(images, missing, bank))
    return torch.where(missing.to(torch.bool).expand_as(x), filled.to(x.dtype), x)


@dataclass(frozen=True)
class RecoveryMasks:
    """The holes of recovery training (``frame.recovery.RecoveryChains``): random squares on every training image.

    Args:
        mask_size: side of each square, in pixels (int) or as a fraction of the image side
            (float in (0, 1]); the paper trains with 40x40 masks on 64x64 faces (0.625). A list
            of such sides draws one of them (uniformly, per image) for every training image, so
            that one model learns the holes of several test sizes (Table 2's M40 and M50).
        n_masks: squares per image (their union is the mask).
        placement: ``"random"`` (uniform, fully inside the image) or ``"center"``.
        start: where the hole starts (``start_chains``): ``"mean"`` (the paper's cold start),
            ``"harmonic"`` (the MRF-l2 fill, which the chain then refines) or ``"exemplars"``
            (the nearest training images' fill, from the data module's images in training and
            ``--bank`` in ``frame-inpaint``); ``frame-inpaint`` uses the same start by default.
        test_steps: Langevin steps when a trained model recovers new images (``frame-inpaint``,
            ``bench/recovery.py``; their ``--steps`` overrides it); ``None``: the model's L, as in
            training. A chain trained to match the statistics after L steps can stop earlier: its
            first steps carry the start towards the data, its last ones add texture at places the
            masked error punishes.
        test_step_size: the Langevin step size delta of eq. (16) for those recoveries (``--step-size``
            overrides it); ``None``: the sampler's, as in training. Smaller steps, more of them,
            follow the drift more closely than the training chains' coarse ones.
    """

    mask_size: int | float | tuple[int | float, ...] = 40
    n_masks: int = 1
    placement: str = "random"
    start: str = "mean"
    test_steps: int | None = None
    test_step_size: float | None = None

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"model.buffer.placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.start not in STARTS:
            raise ValueError(f"model.buffer.start must be one of {STARTS}, got {self.start!r}")
        if int(self.n_masks) != self.n_masks or self.n_masks < 1:
            raise ValueError(f"model.buffer.n_masks must be a positive integer, got {self.n_masks}")
        if not isinstance(self.mask_size, (int, float, str)) and hasattr(self.mask_size, "__iter__"):  # a list, YAML's too
            object.__setattr__(self, "mask_size", tuple(self.mask_size))
            if not self.mask_size:
                raise ValueError("model.buffer.mask_size: an empty list; give a side or a list of sides")
        for size in self.sizes:
            mask_side(size, 10**9)  # type/range check; the side is checked against each image
        if self.test_steps is not None:  # null: the sampler's
            checked_steps(self.test_steps, "model.buffer.test_steps")
        if self.test_step_size is not None:
            checked_step_size(self.test_step_size, "model.buffer.test_step_size")

    @classmethod
    def from_config(cls, config: dict[str, Any] | RecoveryMasks | None) -> RecoveryMasks | None:
        if config is None or isinstance(config, RecoveryMasks):
            return config
        keys = [field.name for field in fields(cls)]
        unknown = set(config) - set(keys)
        if unknown:
            raise ValueError(f"model.buffer has unknown keys {sorted(unknown)}; use {', '.join(keys)}")
        return cls(**dict(config))

    @property
    def sizes(self) -> tuple[int | float, ...]:
        """The square sides the training masks draw from (one, unless ``mask_size`` is a list)."""
        return self.mask_size if isinstance(self.mask_size, tuple) else (self.mask_size,)

    def sample(self, n: int, size: tuple[int, int], generator: torch.Generator | None = None, device=None) -> Tensor:
        """``n`` masks ``[n, 1, H, W]``, True = missing; with several sides, each image's drawn
        uniformly from them."""
        sides = self.sizes
        masks = [square_masks(n, size, side, self.n_masks, self.placement, generator, device) for side in sides]
        if len(sides) == 1:
            return masks[0]
        device = masks[0].device
        which = torch.randint(len(sides), (n,), generator=generator, device=generator.device if generator else device)
        return torch.stack(masks)[which.to(device), torch.arange(n, device=device)]

    def masked_chains(
        self, observed: Tensor, buffer: ChainBuffer, space: InputSpace, generator: torch.Generator, rows: tuple[int, int],
        bank: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(start chains, missing) for a batch of training images ``observed`` (input space).

        The chains are the masked training images, one per image of the batch, and the
        `buffer` keeps them for display. Every process holds the same generator: masks are
        drawn for the images of all processes, ``rows = (first row, total rows)``, and this
        process keeps its own rows, so the processes' masks differ and a resumed run draws
        the same ones. ``bank``: the training images, for ``start="exemplars"``.
        """
        if tuple(observed.shape) != tuple(buffer.chains.shape):
            raise ValueError(
                f"model.buffer: the chains are the masked training images, so the chain buffer "
                f"{tuple(buffer.chains.shape)} must match the batch {tuple(observed.shape)}: set "
                "model.buffer.n_chains to the batch size (data.batch_size, or the number of images)"
            )
        n = observed.shape[0]
        missing = self.sample(rows[1], observed.shape[-2:], generator, observed.device)[rows[0] : rows[0] + n]
        return start_chains(observed.float(), missing, self.start, space, bank), missing
