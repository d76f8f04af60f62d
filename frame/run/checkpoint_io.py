"""Checkpoints that are written whole or fail loudly, and read through the allow-list.

``AtomicCheckpointIO`` (a Lightning ``CheckpointIO``; ``frame.run.fit`` gives it to every
Trainer) writes each checkpoint to a temporary file in the target folder, then renames it:
a killed run never leaves half a checkpoint, and a folder that cannot be written raises
``CheckpointWriteError`` naming it (Lightning's own writer swallows a ``PermissionError``).
It reads a checkpoint to resume from through ``frame.run.checkpoints.read_checkpoint`` (the
allow-list, and the upgrade of older formats), so the model itself never reads files.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from frame.run.checkpoints import read_checkpoint

#: the file Lightning's spawn launcher (``trainer=ddp_sim``) writes the trained weights to and reads
#: back in the main process: Lightning's own, not a checkpoint of ours (still read weights-only)
SPAWN_WEIGHTS = ".temp.ckpt"


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written; the message names the folder."""


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

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """The checkpoint at `path` read safely and upgraded to the current format."""
        if "://" in str(path) or Path(path).name == SPAWN_WEIGHTS:  # a remote store, or Lightning's own hand-over
            return super().load_checkpoint(path, weights_only=True)
        return read_checkpoint(path)


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
