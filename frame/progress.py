"""One progress bar for long work: the commands, the sampler and the bench scripts.

On a terminal it shows the count, the rate and the time left; when stderr is not a terminal
(a log file, a pipe, a batch job) it writes nothing (tqdm's ``disable=None``), so logs hold
results, not carriage returns.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, desc: str | None = None, total: int | None = None, unit: str = "it",
             enabled: bool = True, leave: bool = False) -> tqdm:
    """``iterable`` wrapped in a bar (iterate it as the iterable), or a bar to ``update(n)`` by
    hand when ``iterable`` is None; ``enabled=False`` turns it off even on a terminal."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, dynamic_ncols=True,
                disable=None if enabled else True)


def say(text: str) -> None:
    """Prints a line on stdout without breaking a bar drawn on the terminal."""
    tqdm.write(text)
    sys.stdout.flush()  # a log file gets each line as it comes
