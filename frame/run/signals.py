"""Runs that stop on a signal with a checkpoint of their last step.

``StopOnSignal`` (also added to every run) turns SIGTERM (what Slurm and Kubernetes send
before killing), SIGUSR1 (off Slurm's auto-requeue, which keeps Lightning's own handler) and a
first Ctrl+C into a stop at the end of the current step, after saving ``last.ckpt`` of that
step through the run's ``ModelCheckpoint``. ``frame.run.fit.fit`` then raises
``RunInterrupted`` naming the signal, the step and the checkpoint to resume from.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from frame.run.checkpoint_io import check_writable
from frame.run.checkpoints import checkpoint_folder


class RunInterrupted(RuntimeError):
    """A run stopped by a signal; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class StopOnSignal(pl.Callback):
    """SIGTERM, SIGUSR1 or a first Ctrl+C: save ``last.ckpt`` at the end of this step and stop.

    Lightning notes SIGTERM itself (``trainer.received_sigterm``, shared across processes) and
    raises ``SIGTERMException`` after the step; this callback saves first, at the point where
    ``ModelCheckpoint`` saves, so the checkpoint resumes like any other. A second Ctrl+C stops
    at once, without a checkpoint of the unfinished step.
    """

    def __init__(self) -> None:
        self.signal: str | None = None  # the signal that stopped the run
        self.saved: str | None = None  # the checkpoint written on stopping
        self.step: int | None = None  # the step it holds
        self._previous: dict[int, Any] = {}

    # -- the folder is writable before the first step -----------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and (folder := checkpoint_folder(trainer)) is not None:
            check_writable(folder)

    # -- signals --------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        wanted = [signal.SIGINT]
        # under Slurm's auto-requeue Lightning already handles SIGUSR1 (saves, then requeues)
        if hasattr(signal, "SIGUSR1") and signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            wanted.append(signal.SIGUSR1)
        for signum in wanted:
            self._previous[signum] = signal.signal(signum, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signal == "SIGINT":
            raise KeyboardInterrupt  # the second Ctrl+C
        self.signal = signal.Signals(signum).name
        again = " (Ctrl+C again stops at once)" if signum == signal.SIGINT else ""
        print(f"\n{self.signal}: stopping after this step with a checkpoint{again}", flush=True)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    # -- the stop -------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        asked = self.signal is not None or trainer.received_sigterm
        if not trainer.strategy.reduce_boolean_decision(asked, all=False):
            return
        self.signal = self.signal or "SIGTERM"
        self.save(trainer)
        raise SIGTERMException

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):  # Lightning's own stop, between two steps
            self.signal = self.signal or "SIGTERM"
            if self.step != trainer.global_step:
                self.save(trainer)
        elif isinstance(exception, KeyboardInterrupt):  # mid-step: nothing consistent to save
            self.signal = "SIGINT"

    def save(self, trainer: pl.Trainer) -> None:
        """``last.ckpt`` of the current step, through the run's ``ModelCheckpoint``."""
        callback = trainer.checkpoint_callback
        if callback is None or callback.dirpath is None:
            return
        path = callback.last_model_path or callback.format_checkpoint_name({}, callback.CHECKPOINT_NAME_LAST)
        callback.last_model_path = path  # before saving: it is part of the saved state
        trainer.save_checkpoint(path, weights_only=False)  # everything a resume needs
        self.saved, self.step = path, trainer.global_step

    def interrupted(self, trainer: pl.Trainer) -> RunInterrupted:
        """The error that ends a stopped run, for ``frame.run.fit.fit`` to raise."""
        signum = getattr(signal, self.signal or "SIGTERM")
        if self.saved:
            where = f"saved {self.saved} (step {self.step}); resume with ckpt_path={self.saved}"
        else:
            last = getattr(trainer.checkpoint_callback, "last_model_path", "") or None
            where = f"no checkpoint of this step; the last one is {last}" if last else "no checkpoint was written"
        return RunInterrupted(f"stopped by {self.signal} at step {trainer.global_step}: {where}", signum)


