"""One LightningDataModule for every image set: folders, files, hybrids, embedded images.

All images are loaded once into memory as a float32 tensor ``[N, 3, H, W]`` in ``[0, 1]``
(FRAME models learn from a handful to a few hundred images). Training batches are plain
image tensors ``[B, 3, H, W]``, without labels.

Algorithm 1 of the paper computes the observed statistics over all ``n`` training images,
so by default (``batch_size=None``) every batch holds every image exactly once, in random
order; an int ``batch_size`` < N gives minibatches of random images. One epoch is
``steps_per_epoch`` batches, so progress bars and epoch-level logging are meaningful.

Sampling uses :class:`PermutationSampler` rather than ``torch.utils.data.RandomSampler``:
in distributed runs Lightning *replaces* a ``RandomSampler`` by a ``DistributedSampler``
over the dataset (one pass over the N images split across ranks, so a batch of N images is
never filled and ``steps_per_epoch`` is lost), whereas any other sampler is wrapped by
``DistributedSamplerWrapper``, which shards the indices it yields. The sampler yields
``world_size`` times as many indices, so every rank still runs ``steps_per_epoch`` steps of
``B`` images, and it is seeded identically on all ranks, so in each step the ranks together
see every image exactly ``world_size`` times when ``batch_size=None``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from frame.data.images import (
    ON_BAD_IMAGE,
    embedded_images,
    list_images,
    load_readable,
    to_tensor,
)

__all__ = ["ImageDataModule", "ImageTensorDataset", "PermutationSampler"]

MIN_IMAGE_SIZE = 8


class ImageTensorDataset(Dataset[torch.Tensor]):
    """Map-style dataset over an image tensor ``[N, 3, H, W]``; items are ``[3, H, W]`` tensors."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


class PermutationSampler(Sampler[int]):
    """Yields ``num_samples`` indices made of back-to-back random permutations of ``range(n)``.

    With a batch size ``B = n`` every batch is one permutation (each image exactly once); with
    ``B < n`` batches are random images, each image seen equally often over a permutation.

    Args:
        n: dataset size.
        num_samples: indices per epoch.
        seed: if given, epoch ``e`` is drawn from ``seed + e`` (see :meth:`set_epoch`), so
            every distributed rank draws the same sequence; if ``None`` each pass draws its
            seed from torch's global generator (respecting ``torch.manual_seed``).
    """

    def __init__(self, n: int, num_samples: int, seed: int | None = None) -> None:
        if n < 1 or num_samples < 1:
            raise ValueError(f"need n >= 1 and num_samples >= 1, got n={n}, num_samples={num_samples}")
        self.n = n
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose sequence a seeded sampler yields (called by Lightning)."""
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        """A generator seeded from ``seed + epoch``, or from the global RNG when unseeded."""
        seed = self.seed + self.epoch if self.seed is not None else int(torch.empty((), dtype=torch.int64).random_())
        return torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[int]:
        generator = self._generator()
        rounds = -(-self.num_samples // self.n)  # ceil
        order = torch.cat([torch.randperm(self.n, generator=generator) for _ in range(rounds)])
        return iter(order[: self.num_samples].tolist())

    def __len__(self) -> int:
        return self.num_samples


def _as_list(value: str | Sequence[str]) -> list[str]:
    """A single name/path or a sequence of them (including OmegaConf ListConfig) as a list."""
    return [value] if isinstance(value, (str, os.PathLike)) else list(value)


class ImageDataModule(pl.LightningDataModule):
    """Training images for FRAME models, from files or from embedded sample images.

    Args:
        root: a folder (searched recursively), an image file, or a list of them (a hybrid of
            several textures). Takes precedence over ``embedded``.
        embedded: name(s) from :data:`frame.data.images.EMBEDDED_IMAGES`, e.g. ``"lfw_faces"``.
        image_size: side of the square training images (or ``(H, W)``); at least 8.
        batch_size: images per batch; ``None`` (default) = all N images in every batch,
            as in Algorithm 1. Values above N are reduced to N.
        steps_per_epoch: batches per epoch (per rank in distributed runs).
        grayscale: ``True`` converts images to grey (replicated into 3 channels); ``"auto"``
            becomes ``True`` at :meth:`setup` when every image is grey already (R = G = B),
            so that the model's chains are grey too.
        on_bad_image: ``"fail"`` or ``"skip"`` (warn and skip unreadable files).
        num_workers: DataLoader workers; 0 is right for in-memory tensors.

    After :meth:`setup`: ``images`` (``[N, 3, H, W]`` float32 in ``[0, 1]``) and ``paths``
    (one name per image, for logging: file paths or ``embedded:<name>/<index>``).
    """

    def __init__(
        self,
        root: str | list[str] | None = None,
        embedded: str | list[str] | None = None,
        image_size: int | tuple[int, int] = 64,
        batch_size: int | None = None,
        steps_per_epoch: int = 100,
        grayscale: bool | str = False,
        on_bad_image: str = "fail",
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if root is None and embedded is None:
            raise ValueError("Give data.root (image files/folders) or data.embedded (embedded image set names).")
        self.root = root
        self.embedded = embedded
        self.image_size = _check_image_size(image_size)
        self.batch_size = _check_optional_positive(batch_size, "data.batch_size")
        self.steps_per_epoch = _check_positive(steps_per_epoch, "data.steps_per_epoch")
        if grayscale not in (True, False, "auto"):
            raise ValueError(f"data.grayscale must be true, false or auto, got {grayscale!r}")
        self.grayscale = grayscale
        if on_bad_image not in ON_BAD_IMAGE:
            raise ValueError(f"data.on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")
        self.on_bad_image = on_bad_image
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"data.num_workers must be an int >= 0, got {num_workers!r}")
        self.num_workers = num_workers
        self.images: torch.Tensor | None = None
        self.paths: list[str] = []

    # ------------------------------------------------------------------ loading

    def _read_files(self) -> tuple[list[str], list[Image.Image]]:
        """Names and PIL images of the readable files under ``root``."""
        loaded = load_readable(list_images(_as_list(self.root)), self.on_bad_image)
        return [str(path) for path, _ in loaded], [image for _, image in loaded]

    def _read_embedded(self) -> tuple[list[str], list[Image.Image]]:
        """Names and PIL images of the embedded image sets."""
        names: list[str] = []
        images: list[Image.Image] = []
        for name in _as_list(self.embedded):
            found = embedded_images(name)
            names += [f"embedded:{name}/{index:03d}" for index in range(len(found))]
            images += found
        return names, images

    def setup(self, stage: str | None = None) -> None:
        """Load and convert all images once (later calls do nothing)."""
        if self.images is not None:
            return
        names, images = self._read_files() if self.root is not None else self._read_embedded()
        self.images = to_tensor(images, self.image_size, grayscale=self.grayscale is True)
        if self.grayscale == "auto":
            self.grayscale = bool((self.images.amax(1) - self.images.amin(1)).max() <= 1 / 255)
        self.paths = names

    # ------------------------------------------------------------------ access

    def _loaded(self) -> torch.Tensor:
        """The image tensor, or a clear error before :meth:`setup`."""
        if self.images is None:
            raise RuntimeError("ImageDataModule.setup() has not been called yet.")
        return self.images

    @property
    def n_images(self) -> int:
        """Number of training images N."""
        return self._loaded().shape[0]

    @property
    def effective_batch_size(self) -> int:
        """Images per batch: N when ``batch_size`` is None, else ``min(batch_size, N)``."""
        n = self.n_images
        return n if self.batch_size is None else min(self.batch_size, n)

    def observed_images(self) -> torch.Tensor:
        """All training images ``[N, 3, H, W]`` (e.g. for logging a grid of observed images)."""
        return self._loaded()

    def _world_size(self) -> int:
        """Number of distributed ranks of the attached trainer (1 without one)."""
        return self.trainer.world_size if self.trainer is not None else 1

    def train_dataloader(self) -> DataLoader:
        """``steps_per_epoch`` batches of ``effective_batch_size`` random images each."""
        self.setup("fit")
        batch = self.effective_batch_size
        world = self._world_size()
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if world > 1 else None
        sampler = PermutationSampler(self.n_images, self.steps_per_epoch * batch * world, seed=seed)
        return DataLoader(
            ImageTensorDataset(self._loaded()),
            batch_size=batch,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


def _check_positive(value: int, key: str) -> int:
    """``value`` if it is an int >= 1, else a ValueError naming the config ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be an int >= 1, got {value!r}")
    return value


def _check_optional_positive(value: int | None, key: str) -> int | None:
    """Like :func:`_check_positive` but ``None`` passes through."""
    return None if value is None else _check_positive(value, key)


def _check_image_size(image_size: int | Sequence[int]) -> int | tuple[int, int]:
    """Validate ``data.image_size``: an int or an ``(H, W)`` pair, each at least 8."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        sides: tuple = (image_size,)
    elif isinstance(image_size, Sequence) and not isinstance(image_size, str):
        sides = tuple(image_size)
    else:
        sides = ()
    valid = len(sides) in (1, 2) and all(
        isinstance(side, int) and not isinstance(side, bool) and side >= MIN_IMAGE_SIZE for side in sides
    )
    if not valid:
        raise ValueError(
            f"data.image_size must be an int >= {MIN_IMAGE_SIZE} or an (H, W) pair of them, got {image_size!r}"
        )
    return sides[0] if len(sides) == 1 else (sides[0], sides[1])
