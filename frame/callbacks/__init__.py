"""Lightning callbacks of the framework."""

from frame.callbacks.samples import SampleGrid

__all__ = ["SampleGrid"]
