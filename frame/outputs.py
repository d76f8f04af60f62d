"""Writing an output file: the one way every command and callback does it.

A path the user names as an output may already exist as a symbolic link or a hard link to a
file the command reads (an input image, the checkpoint) or to any file outside the run. Writing
through it (``open(path, "w")``) would overwrite what it points to. Here a file is written

* after checking that it is not the same file as any input (device and inode: hard links and
  symbolic links too, not path strings), and that its folder can be made;
* to a temporary file in the target folder, renamed over the name (``os.replace``), which
  replaces a link instead of following it, and leaves the old file whole if the write fails.

``check_finite`` refuses outputs holding NaN or infinity before anything is written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` are one file (after following links; hard links count); False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_target(path: Path, flag: str = "--out") -> None:
    """Refuses a file output that cannot be written, before any work: a folder in its place, or a
    parent that is a file. Creates nothing."""
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder: give the file to write")
    _check_writable_above(path.absolute().parent, path, flag)


def check_folder(folder: Path, flag: str = "--out") -> None:
    """Refuses a folder output that cannot be made or written, before any work. Creates nothing."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{flag} {folder} is a file, not a folder")
    _check_writable_above(folder.absolute(), folder, flag)


def _check_writable_above(start: Path, output: Path, flag: str) -> None:
    """The first existing folder of `start` and its parents must be a folder this process can write in."""
    for parent in [start, *start.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"{flag} {output}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PermissionError(f"{flag} {output}: cannot write in {parent}")
            return


def write_file(path: Path, write: Callable[[Path], object], reads: Iterable[Path] = ()) -> Path:
    """Writes `path` by calling ``write(temporary)`` and renaming the temporary file over `path`.

    The temporary file lies in the target folder and ends in the target's suffix (writers such
    as ``save_image`` choose the format from it). Refuses, naming both, a `path` that is the same
    file as one of `reads`. A link at `path` is replaced, never followed.
    """
    path = Path(path)
    for read in reads:
        if same_file(path, Path(read)):
            raise ValueError(f"{path} is the same file as {read}, which this command reads: choose another output")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str, reads: Iterable[Path] = ()) -> Path:
    """:func:`write_file` of UTF-8 text."""
    return write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), reads)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_finite(tensor: torch.Tensor, what: str) -> None:
    """Refuses an output holding NaN or infinity, naming it (nothing is written)."""
    import torch  # here: the commands import this module before parsing (start-up time, frame.cli)

    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{what} holds {bad} NaN or infinite values: nothing written (the model or its input is broken)")
