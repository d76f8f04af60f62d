"""Which measures a set of samples gets, and the evaluator that scores them: the one rule that
``frame-eval`` and the ``EvalMetrics`` callback follow.

``objects`` (KID, Fréchet distance, precision, recall, density, coverage over VGG-16 conv5_3
features) needs k + 1 samples and 2 (k + 1) reference images, the reference split in two for the
floor; ``texture`` (Gram and sliced Wasserstein distances over crops) needs one exemplar.
``auto`` takes objects when there are enough images for it, else texture.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from frame.eval.features import VGGFeatures
from frame.eval.report import Evaluator

#: neighbours of precision/recall/density/coverage; objects need k + 1 samples
K = 5


def choose_kind(kind: str, n_reference: int, n_samples: int | None = None) -> str:
    """`kind`, or for ``auto``: objects with 2 (K + 1) reference images and, where the number of
    samples is fixed (`n_samples`; None: the caller can draw more), K + 1 samples; else texture."""
    if kind != "auto":
        return kind
    return "objects" if n_reference >= 2 * (K + 1) and (n_samples is None or n_samples >= K + 1) else "texture"


def make_evaluator(reference: Tensor, n_samples: int, kind: str, key: str, features: dict[str, Any], device: Any = "cpu",
                   hint: str = "", **options: Any) -> Evaluator:
    """The ``Evaluator`` of `kind` (already chosen) for `n_samples` samples against `reference`,
    VGG-16 on `device`, run only as deep as that kind needs (`features`: ``VGGFeatures``' other arguments).
    Too few images for objects is one line naming `key` (the flag or config key of the kind),
    with `hint` (how to get more)."""
    objects = kind == "objects"
    if objects and len(reference) < 2 * (K + 1):
        raise ValueError(f"{key} objects needs at least {2 * (K + 1)} reference images, got {len(reference)}")
    if objects and n_samples < K + 1:
        raise ValueError(f"{key} objects needs at least {K + 1} samples, got {n_samples}{hint}")
    taps = {"texture_layers": ()} if objects else {"layers": ()}
    n = min(n_samples, len(reference) // 2) if objects else None
    return Evaluator(reference, kind, features=VGGFeatures(**taps, **features).to(device), n=n, k=K, **options)
