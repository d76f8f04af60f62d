"""Deep FRAME models: energy-based random fields on ConvNet filters, learned by analysis by synthesis.

    import frame
    model = frame.load("outputs/train/runs/<run>/checkpoints/last.ckpt")
    images = model.sample(16, steps=100)          # N x 3 x H x W in [0, 1]
    scores = model.score(images)                  # f(I; w) per image (Table 1)
    print(frame.evaluate(images, "lfw_faces"))    # quality table with floors and ceilings
    run = frame.train(["model=stationary", "data=texture"])   # the run folder

``load``, ``evaluate``, ``train`` and ``Model`` live in ``frame.api`` (images in and out:
float tensors N x 3 x H x W, RGB, in [0, 1]). They are imported on first use, so that
``import frame`` (and every ``frame-*`` command's ``--help``) stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from frame.api import Model, evaluate, load, train

__all__ = ["Model", "evaluate", "load", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("frame.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'frame' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
