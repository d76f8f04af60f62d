"""Lightning callbacks that observe a run: sample grids, detector maps, evaluation metrics.

What controls a run (divergence guard, signal stopping, checkpoint IO, random states) lives in
``frame.run``.
"""

from frame.callbacks.detectors import DetectorMaps
from frame.callbacks.eval import EvalMetrics
from frame.callbacks.samples import SampleGrid, publish_grid

__all__ = ["DetectorMaps", "EvalMetrics", "SampleGrid", "publish_grid"]
