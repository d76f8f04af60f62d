"""The learning step's optimizer settings and learning-rate schedules (``FrameModel``'s
``optimizer`` and ``scheduler``, the latter stepped every iteration)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def checked_optimizer(optimizer: OptimizerFactory | None) -> OptimizerFactory:
    """The optimizer factory (a Hydra partial of a torch optimizer; default SGD, lr 1e-4), its
    rate, momentum and weight decay checked, each naming its ``model.optimizer`` key."""
    optimizer = optimizer or partial(torch.optim.SGD, lr=1e-4)
    settings = getattr(optimizer, "keywords", {})
    for key in ("lr", "momentum", "weight_decay"):
        value = settings.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (key == "lr" and value == 0):
            raise ValueError(f"model.optimizer.{key} must be a number {'>' if key == 'lr' else '>='} 0, got {value!r}")
    return optimizer


def log_decay_factor(step: int, every: int, total: int, final_factor: float) -> float:
    """lr(t) / lr(0): constant over blocks of `every` iterations, log-spaced from 1 to `final_factor`.

    Block b = t // every of B = ceil(total / every) blocks gets final_factor ** (b / (B - 1)),
    i.e. MatConvNet's ``logspace(0, log10(final_factor), B)`` with each value held `every`
    iterations; past `total` the last value is kept.
    """
    blocks = max(1, -(-int(total) // int(every)))
    block = min(int(step) // int(every), blocks - 1)
    return float(final_factor) ** (block / (blocks - 1)) if blocks > 1 else 1.0


def log_decay(optimizer: torch.optim.Optimizer, every: int = 10, total: int = 300, final_factor: float = 0.01) -> LambdaLR:
    """The paper's schedule (Section 9): "learning rate is decayed logarithmically every 10 iterations".

    The paper gives no end value; the authors' MatConvNet code (the generative ConvNet release)
    uses ``logspace(-2, -4, n) * 100``, i.e. from 1 to 1/100 of the initial rate, the default here.

    Args:
        optimizer: the model's optimizer (Hydra passes it: ``_partial_: true``).
        every: iterations per block at a constant rate.
        total: iterations of the run (the last block ends at final_factor).
        final_factor: lr at the end / initial lr.
    """
    if int(every) < 1 or int(total) < 1 or not 0 < final_factor <= 1:
        raise ValueError(f"log_decay needs every >= 1, total >= 1 and 0 < final_factor <= 1; got {every}, {total}, {final_factor}")
    return LambdaLR(optimizer, lambda step: log_decay_factor(step, every, total, final_factor))
