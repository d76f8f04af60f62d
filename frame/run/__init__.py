"""The run floor: compose -> build -> fit, and everything about a run's life cycle.

- ``fit``: ``train`` (the rollback loop: a diverged run resumes from its last good checkpoint
  with the Langevin step size and learning rate backed off) and ``fit`` (one ``Trainer.fit``);
- ``build``: the objects of a composed Hydra config (``build_model``, ``prepare_data``);
- ``checkpoints``: reading a checkpoint safely (allow-list, upgrade of older formats),
  rebuilding its model (``load_model``), the checks before resuming, the folder policy, requeue;
- ``checkpoint_io``: the Lightning ``CheckpointIO`` that writes atomically and reads through the
  allow-list (the model never reads files); ``checkpoint_header``: the ``frame`` header (format,
  energy, model config) a run writes into each checkpoint;
- ``divergence``: the divergence guard and its backoff; ``signals``: stopping on a signal;
- ``precondition``: the per-weight or per-layer learning rates of Section 5.1 (a callback);
- ``random_states``: the global random streams in checkpoints; ``run_checkpoint``: Lightning's
  ``ModelCheckpoint`` without the machine's paths.

Nothing below the commands (``frame.cli``) imports this package.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from frame.run.build import build_model, prepare_data
    from frame.run.checkpoint_header import CheckpointHeader
    from frame.run.checkpoint_io import AtomicCheckpointIO, CheckpointWriteError
    from frame.run.checkpoints import CheckpointError, load_model, read_checkpoint
    from frame.run.divergence import DivergenceError, DivergenceGuard
    from frame.run.fit import fit, train
    from frame.run.precondition import Precondition
    from frame.run.random_states import RandomStates
    from frame.run.run_checkpoint import RunCheckpoint
    from frame.run.signals import RunInterrupted, StopOnSignal

#: each name and the module that holds it, imported on first use: a command that only needs
#: ``frame.run.divergence`` (its error class) does not load the training stack of ``fit``
_HOME = {
    "build_model": "build",
    "prepare_data": "build",
    "CheckpointHeader": "checkpoint_header",
    "AtomicCheckpointIO": "checkpoint_io",
    "CheckpointWriteError": "checkpoint_io",
    "CheckpointError": "checkpoints",
    "load_model": "checkpoints",
    "read_checkpoint": "checkpoints",
    "DivergenceError": "divergence",
    "DivergenceGuard": "divergence",
    "fit": "fit",
    "train": "fit",
    "Precondition": "precondition",
    "RandomStates": "random_states",
    "RunCheckpoint": "run_checkpoint",
    "RunInterrupted": "signals",
    "StopOnSignal": "signals",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"frame.run.{_HOME[name]}"), name)
    raise AttributeError(f"module 'frame.run' has no attribute {name!r}")


__all__ = [
    "AtomicCheckpointIO", "CheckpointError", "CheckpointHeader", "CheckpointWriteError", "DivergenceError", "DivergenceGuard", "Precondition", "RandomStates",
    "RunCheckpoint", "RunInterrupted", "StopOnSignal", "build_model", "fit", "load_model", "prepare_data", "read_checkpoint", "train",
]
