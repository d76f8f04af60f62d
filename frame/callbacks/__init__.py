"""Lightning callbacks of the framework."""

from frame.callbacks.detectors import DetectorMaps
from frame.callbacks.samples import SampleGrid, publish_grid

__all__ = ["DetectorMaps", "SampleGrid", "publish_grid"]
