"""Checkpoints that are written whole or fail loudly, and runs that stop on a signal with one.

``AtomicCheckpointIO`` (a Lightning ``CheckpointIO``; ``frame.training`` gives it to every
Trainer) writes each checkpoint to a temporary file in the target folder, then renames it:
a killed run never leaves half a checkpoint, and a folder that cannot be written raises
``CheckpointWriteError`` naming it (Lightning's own writer swallows a ``PermissionError``).

``StopOnSignal`` (also added to every run) turns SIGTERM (what Slurm and Kubernetes send
before killing), SIGUSR1 (off Slurm's auto-requeue, which keeps Lightning's own handler) and a
first Ctrl+C into a stop at the end of the current step, after saving ``last.ckpt`` of that
step through the run's ``ModelCheckpoint``. ``frame.training.fit`` then raises
``RunInterrupted`` naming the signal, the step and the checkpoint to resume from.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written; the message names the folder."""


class RunInterrupted(RuntimeError):
    """A run stopped by a signal; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def unwritable(folder: Path, err: OSError) -> CheckpointWriteError:
    reason = err.strerror or str(err)
    return CheckpointWriteError(
        f"cannot write checkpoints to {folder} ({reason}): make it a writable folder or choose another "
        "callbacks.model_checkpoint.dirpath"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Torch checkpoints written atomically (temporary file in the same folder, then rename).

    A writer killed mid-write (SIGKILL, power loss) leaves its temporary file behind, never a
    broken checkpoint; the next save of the same checkpoint removes such leftovers, but never
    the temporary file of another process still running (its name holds the writer's pid).
    ``os.replace`` replaces a link at the checkpoint's name; it never writes through it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # a remote store: Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed writer
                if not writer_alive(stale, path.name):
                    stale.unlink(missing_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600
            os.replace(tmp, path)
        except OSError as err:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise unwritable(path.parent, err) from err
        except BaseException:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise


def writer_alive(tmp: Path, name: str) -> bool:
    """Whether the temporary file `tmp` (``.<name>.<pid>.<random>.tmp``) belongs to another process
    still running: a run sharing the folder is writing it, and it is not ours to remove."""
    pid = tmp.name[len(name) + 2:].split(".")[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


def check_writable(folder: Path) -> None:
    """Creates `folder` and writes a file in it, or raises ``CheckpointWriteError``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise unwritable(folder, err) from err


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
        """The error that ends a stopped run, for ``frame.training.fit`` to raise."""
        signum = getattr(signal, self.signal or "SIGTERM")
        if self.saved:
            where = f"saved {self.saved} (step {self.step}); resume with ckpt_path={self.saved}"
        else:
            last = getattr(trainer.checkpoint_callback, "last_model_path", "") or None
            where = f"no checkpoint of this step; the last one is {last}" if last else "no checkpoint was written"
        return RunInterrupted(f"stopped by {self.signal} at step {trainer.global_step}: {where}", signum)


def checkpoint_folder(trainer: pl.Trainer) -> Path | None:
    """Where the run's ``ModelCheckpoint`` writes (None without one, or for a remote store)."""
    callback = trainer.checkpoint_callback
    if callback is None:
        return None
    folder = callback.dirpath or os.path.join(trainer.default_root_dir, "checkpoints")
    return None if "://" in str(folder) else Path(folder)


def requeued_checkpoint(trainer: pl.Trainer) -> str | None:
    """Under Slurm, the checkpoint Lightning saved on SIGUSR1 before requeueing the job
    (``<run folder>/hpc_ckpt_<n>.ckpt``, the newest), which it would resume from by itself."""
    if not SLURMEnvironment.detect():
        return None
    found = [(int(m.group(1)), path) for path in Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt")
             if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", path.name))]
    return str(max(found)[1]) if found else None
