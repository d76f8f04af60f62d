"""The chains of a model trained for image recovery (Section 9): a chain source of its own.

Chosen by the model's buffer, ``model.buffer: {_target_: frame.recovery.RecoveryChains, ...}``
(``model/buffer=recovery``): every iteration each training image gets random holes
(``RecoveryMasks``) and its chain samples p(I_M | I_notM; w) from the masked image, so the
chains are the batch's masked images, one per image, and only the holes move. The model sees
the same two calls as for persistent chains (``frame.buffer.ChainBuffer.starts`` / ``keep``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

from frame.buffer import ChainBuffer, Starts
from frame.recovery.masks import RecoveryMasks

if TYPE_CHECKING:
    from frame.input_space import InputSpace


class RecoveryChains(ChainBuffer):
    """One chain per training image, cold-started every iteration from the masked image.

    Args:
        n_chains, shape, **buffer: as ``ChainBuffer`` (n_chains = the batch size).
        mask_size, n_masks, placement, start, test_steps, test_step_size: the holes and the
            recoveries of a trained model (``RecoveryMasks``).
    """

    def __init__(
        self,
        n_chains: int,
        shape: tuple[int, int, int],
        mask_size: Any = 40,
        n_masks: int = 1,
        placement: str = "random",
        start: str = "mean",
        test_steps: int | None = None,
        test_step_size: float | None = None,
        **buffer: Any,
    ) -> None:
        super().__init__(n_chains, shape, **buffer)
        self.masks = RecoveryMasks(mask_size, n_masks, placement, start, test_steps, test_step_size)
        #: the training images [N, C, H, W] in [0, 1] for ``start: exemplars`` (not in the checkpoint: --bank)
        self.bank: Tensor | None = None

    def check_shares(self, world_size: int) -> None:
        """Each process masks its own batch (the data module splits the images): no common chains to share."""

    def setup(self, images: Tensor | None, world_size: int) -> None:
        if self.masks.start != "exemplars":
            return
        if not isinstance(images, Tensor):
            raise ValueError(
                "model.buffer.start=exemplars takes the nearest training images, so it needs a data module "
                "that holds them (frame.data.ImageDataModule)"
            )
        self.bank = images.mean(1, keepdim=True) if self.chains.shape[1] == 1 else images

    def starts(self, observed: Tensor, space: InputSpace, rank: int = 0, world_size: int = 1) -> Starts:
        """The masked batch, and its holes: each process's own images, masks drawn for all."""
        generator = self.generator(observed.device)
        n = observed.shape[0]
        rows = (rank * n, world_size * n)
        if self.bank is not None and self.bank.device != observed.device:  # once, not every iteration
            self.bank = self.bank.to(observed.device)
        start, missing = self.masks.masked_chains(observed, self, space, generator, rows, self.bank)
        return Starts(start, missing, rows, generator)

    def keep(self, chains: Tensor, gather: Any = None) -> None:
        """Keeps this process's own recovered images (for display)."""
        self.update(chains)


def recovery_of(model: Any) -> RecoveryMasks | None:
    """The recovery settings a model was trained with, None if it was not trained for recovery."""
    return model.buffer.masks if isinstance(model.buffer, RecoveryChains) else None

