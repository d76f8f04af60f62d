"""Lightning callbacks of the framework."""

from frame.callbacks.checkpointing import AtomicCheckpointIO, CheckpointWriteError, RunInterrupted, StopOnSignal
from frame.callbacks.detectors import DetectorMaps
from frame.callbacks.divergence import DivergenceError, DivergenceGuard
from frame.callbacks.eval import EvalMetrics
from frame.callbacks.random_states import RandomStates
from frame.callbacks.run_checkpoint import RunCheckpoint
from frame.callbacks.samples import SampleGrid, publish_grid

__all__ = [
    "AtomicCheckpointIO", "CheckpointWriteError", "RunInterrupted", "StopOnSignal",
    "DetectorMaps", "DivergenceError", "DivergenceGuard", "EvalMetrics", "RandomStates", "RunCheckpoint", "SampleGrid", "publish_grid"]
