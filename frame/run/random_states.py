"""Saves the torch, numpy and python random states in checkpoints, for exact resume.

Data loading and any host-side randomness draw from these global streams; the chains draw
from their own (``ChainBuffer.generator``, saved with the buffer). With both restored, a
resumed CPU fp32 run gives the weights and chains of the uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


class RandomStates(pl.Callback):
    """Checkpoints the global random states and restores them on resume."""

    def state_dict(self) -> dict[str, Any]:
        """The states, in types a ``weights_only`` load accepts."""
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                      "has_gauss": has_gauss, "gauss": gauss},
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        n = state_dict["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        version, internal, gauss_next = state_dict["python"]
        random.setstate((version, tuple(internal), gauss_next))
