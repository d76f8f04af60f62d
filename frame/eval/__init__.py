"""Model-independent quality metrics of generated images, each next to its floor and ceiling.

``evaluate(samples, reference, kind="objects"|"texture")`` -> {metric: Score}; ``format_table``
prints them. Features: ImageNet VGG-16 (``features``); distribution distances and coverage
(``distribution``); Gram and sliced Wasserstein texture distances (``texture``); the
Portilla-Simoncelli texture distance, outside VGG (``portilla``); pixel checks
(``pixels``); calibration and the table (``report``). VGG-16 feature distances, not Inception
FID: not comparable with published FIDs.
"""

from frame.eval.features import VGGFeatures
from frame.eval.report import NOT_FID, Evaluator, Score, evaluate, format_table

__all__ = ["NOT_FID", "Evaluator", "Score", "VGGFeatures", "evaluate", "format_table"]
