"""What every ``frame-*`` command shares: its flags, their defaults, and how errors reach the user.

One convention for all commands (``frame.cli``):

    --ckpt PATH        a checkpoint written by train.py (``<run>/checkpoints/last.ckpt``)
    --input PATH       an image file or a folder (searched recursively); repeatable
    --out PATH         what the command writes (a file or a folder); never over an input
    --n N              how many images
    --batch-size N     images per forward pass
    --device DEV       ``auto`` (cuda when there is one, else cpu), ``cpu``, ``cuda``, ``cuda:1``
    --seed S           seeds every random draw of the command
    --debug            show the traceback of an error

``run`` parses the command line and runs a command. An error the user can fix (a missing
file, a checkpoint that is not one, a folder without images, a bad value) prints one line,
``frame-<cmd>: error: <message>``, on stderr and exits 2; a machine that cannot do it (no
network for the weights, out of memory) prints one line and exits 1. Tracebacks only with
``--debug``. A bad flag is also one line (argparse's usage block is left to ``--help``).
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from frame.outputs import check_folder, check_target, same_file

#: what ``--device`` accepts (whether a CUDA device exists is checked after parsing)
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def loaded(*names: str) -> tuple[type[BaseException], ...]:
    """The exception classes ``module.Class`` of `names` whose modules are already imported: an error of a
    module never imported cannot have been raised, so nothing is imported to catch it (start-up time and
    memory: ``frame-report`` never loads torch or Lightning)."""
    found = []
    for name in names:
        module, _, attr = name.rpartition(".")
        if module in sys.modules and isinstance(cls := getattr(sys.modules[module], attr, None), type):
            found.append(cls)
    return tuple(found)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors in what the user gave, flags, files or config (a constructor's ValueError names its key): exit status 2."""
    return (OSError, ValueError, *loaded("omegaconf.errors.OmegaConfBaseException", "hydra.errors.InstantiationException",
                                         "lightning_fabric.utilities.exceptions.MisconfigurationException"))


def run_errors() -> tuple[type[BaseException], ...]:
    """What could not go on: the machine (no weights, out of memory, a missing package: its message names it)
    or a run that diverged: exit status 1."""
    return (MemoryError, ImportError, *loaded("torch.OutOfMemoryError", "frame.nets.weights.WeightsUnavailableError",
                                              "frame.run.divergence.DivergenceError"))


def out_of_memory(err: BaseException) -> bool:
    """Whether `err` says the machine ran out of memory (CUDA, or torch's CPU allocator, which raises a RuntimeError)."""
    return type(err).__name__ == "OutOfMemoryError" or isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and ("can't allocate memory" in str(err) or "not enough memory" in str(err)))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every default in ``--help`` (not the None of a flag without one) and the
    module docstring as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``frame-<cmd>: error: ... (see frame-<cmd> --help)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def positive_float(value: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}") from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def device(value: str) -> str:
    """argparse type: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (made a torch device by ``run``)."""
    if not DEVICE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"unknown device {value!r}: use auto, cpu, cuda or cuda:N")
    return value


def torch_device(value: str):
    """The torch device of a ``--device`` value; a CUDA device this machine lacks is an error."""
    import torch

    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(value)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {value}: this machine has no CUDA device; use --device cpu")
    return chosen


def make_parser(prog: str, doc: str | None) -> Parser:
    """A command's parser with ``--device``, ``--seed`` and ``--debug``; the first line of
    ``doc`` is the summary, the rest the description."""
    parser = Parser(prog=prog, description=(doc or "").strip(), formatter_class=HelpFormatter)
    parser.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def add_ckpt(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", type=Path, required=True, help="checkpoint written by train.py (<run>/checkpoints/last.ckpt)")


def add_input(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--input", type=Path, action="append", required=True, metavar="PATH", help=help)


def run(parser: argparse.ArgumentParser, command: Callable[[argparse.Namespace], Any], argv: list[str] | None) -> int:
    """Parses ``argv`` and runs ``command(args)``; returns the exit status (module docstring).

    Nothing heavy is imported before the arguments are parsed (``frame.cli``): torch loads
    here, with the ``--device`` it resolves, and the commands import the rest themselves."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, or a bad flag already reported in one line
        return done.code if isinstance(done.code, int) else 2
    if isinstance(getattr(args, "device", None), str):
        try:
            args.device = torch_device(args.device)
        except ValueError as err:
            return fail(parser.prog, err, 2)
    if args.debug:
        command(args)
        return 0
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, category, *_, **__: print(
            f"{parser.prog}: warning: {one_line(message)}", file=sys.stderr
        )
        try:
            command(args)
        except Exception as err:  # the classes to tell apart are known once the command has run (``loaded``)
            if isinstance(err, run_errors()) or out_of_memory(err):
                return fail(parser.prog, err, 1)
            if isinstance(err, user_errors()):
                return fail(parser.prog, err, 2)
            raise
        except KeyboardInterrupt:
            print(f"{parser.prog}: interrupted", file=sys.stderr)
            return 130
    return 0


def fail(prog: str, err: BaseException, status: int) -> int:
    hint = " (out of memory: lower --batch-size or --n)" if out_of_memory(err) else ""
    print(f"{prog}: error: {one_line(err)}{hint} (--debug shows the traceback)", file=sys.stderr)
    return status


def one_line(err: BaseException | Warning | str) -> str:
    """The message of ``err`` on one line (an OSError as ``<file>: <what is wrong>``)."""
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def check_outputs(reads: Mapping[str, Iterable[Path]], files: Iterable[Path] = (), folder: Path | None = None) -> None:
    """Refuses, before any work, outputs that would write over what the command reads or that cannot be written.

    ``reads`` maps a flag (``--input``, ``--masks``, ``--ckpt``) to the paths it named;
    ``files`` are the files the command writes, ``folder`` the folder it fills. A file may not
    be one it reads (compared as files, by device and inode: a symbolic or hard link to an input
    is that input), nor an image inside a folder it reads; the folder may not be, contain or lie
    inside a file or folder it reads (its outputs could overwrite them, or be read as inputs by
    the next run). A file whose place holds a folder, or whose folder lies under a file, is
    refused too (``frame.outputs``).
    """
    from frame.data.images import is_image_file

    files = list(files)
    for file in files:
        check_target(file)
    if folder is not None:
        check_folder(folder)
    out = folder.resolve() if folder is not None else None
    for flag, paths in reads.items():
        for path in paths:
            read = path.resolve()
            for file in files:
                if same_file(file, path) or (read.is_dir() and read in file.resolve().parents and is_image_file(file)):
                    raise ValueError(
                        f"--out {file} would overwrite {flag} {path} or become one of its images: choose another --out"
                    )
            if out is None:
                continue
            if out == read or out in read.parents:
                raise ValueError(f"--out {folder} is or contains {flag} {path}: choose an --out folder outside it")
            if read.is_dir() and read in out.parents:
                raise ValueError(f"--out {folder} lies inside {flag} {path}: choose an --out folder outside it")
