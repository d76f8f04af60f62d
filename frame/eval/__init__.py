"""Model-independent quality metrics of generated images, each next to its floor and ceiling.

``evaluate(samples, reference, kind="objects"|"texture")`` -> {metric: Score}; ``format_table``
prints them. Features: ImageNet VGG-16 (``features``); distribution distances and coverage
(``distribution``); Gram and sliced Wasserstein texture distances (``texture``); the
Portilla-Simoncelli texture distance, outside VGG (``portilla``); pixel checks
(``pixels``); calibration and the table (``report``). VGG-16 feature distances, not Inception
FID: not comparable with published FIDs.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from frame.eval.features import VGGFeatures
    from frame.eval.report import NOT_FID, Evaluator, Score, evaluate, format_table

__all__ = ["NOT_FID", "Evaluator", "Score", "VGGFeatures", "evaluate", "format_table"]
#: each name and the module that holds it, imported on first use: ``frame.eval.names`` (what
#: ``frame-report`` reads) loads without torch
_HOME = {"VGGFeatures": "features", **dict.fromkeys(("NOT_FID", "Evaluator", "Score", "evaluate", "format_table"), "report")}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"frame.eval.{_HOME[name]}"), name)
    raise AttributeError(f"module 'frame.eval' has no attribute {name!r}")
