"""Claiming a run folder: one run at a time writes into a folder.

Two runs given the same folder (``hydra.run.dir``) at once would overwrite each other's config
and checkpoints, and one's cleanup could remove the other's files. Before anything is written
into it, a run creates ``<folder>/.frame-run.lock`` exclusively (``O_CREAT | O_EXCL``: of two
runs, exactly one succeeds) holding its process id; the other refuses with one line. The lock
is removed when the run's process exits; a lock whose process is gone (a killed run) is taken
over. Only the first process of a distributed run claims (the others share its folder).
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

LOCK = ".frame-run.lock"


class RunFolderBusy(ValueError):
    """The folder is being written by another run that is still running."""


def _owner(lock: Path) -> int | None:
    try:
        text = lock.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


def _secondary_rank() -> bool:
    return any(os.environ.get(key, "0") != "0" for key in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def claim(folder: Path, key: str = "hydra.run.dir") -> Path | None:
    """Makes `folder` and claims it for this process (see the module docstring); returns the lock.

    Raises ``RunFolderBusy`` while another running process holds it, and an ``OSError`` naming
    `key` when the folder cannot be made (a file in its place or above it).
    """
    if _secondary_rank():
        return None
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NotADirectoryError(f"{key}={folder}: cannot make the run folder ({err.strerror or err})") from None
    lock = folder / LOCK
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if owner == os.getpid():
                return lock
            if owner is not None and _alive(owner):
                raise RunFolderBusy(f"{key}={folder} is in use by another run (process {owner}): give this run its own "
                                    "folder, or wait for that run to end") from None
            _take_over(lock, owner)
            continue
        except OSError as err:
            raise PermissionError(f"{key}={folder}: cannot write in the run folder ({err.strerror or err})") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        atexit.register(release, lock)
        return lock
    raise RunFolderBusy(f"{key}={folder}: another run keeps claiming it: give this run its own folder")


def _take_over(lock: Path, owner: int | None) -> None:
    """Removes the lock of a process that is gone; a lock renamed here that turns out to be a
    newer claim is put back."""
    aside = lock.with_name(f"{LOCK}.{os.getpid()}.stale")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    if _owner(aside) != owner:  # another run claimed it between our read and our rename
        try:
            os.link(aside, lock)
        except FileExistsError:
            pass
    aside.unlink(missing_ok=True)


def release(lock: Path) -> None:
    """Removes `lock` if this process holds it."""
    if _owner(lock) == os.getpid():
        lock.unlink(missing_ok=True)


class ClaimRunFolder(Callback):
    """A Hydra callback (``conf/hydra/default.yaml``) claiming ``hydra.run.dir`` before Hydra
    writes its config into it; a busy or unmakeable folder is one line and exit status 2."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        folder = OmegaConf.select(config, "hydra.run.dir")
        if folder is None:
            return
        try:
            claim(Path(folder))
        except (ValueError, OSError) as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"{Path(sys.argv[0]).name or 'frame-train'}: error: {err}", file=sys.stderr)
            sys.exit(2)
