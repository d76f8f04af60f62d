"""Paths in Hydra overrides, for scripts that must hand a path to ``compose`` or ``train.py``.

A path written into an override unquoted passes through Hydra's grammar: a comma splits it,
brackets make a list, ``{_target_: ...}`` makes an object that ``instantiate`` would call, and
``${...}`` is resolved (again at every ``instantiate``, even when escaped). ``path_override``
quotes the path, so that the grammar reads it as one string, and refuses a path holding
``${``, which no quoting keeps from being resolved. The commands never do this: they build
their objects from their arguments.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def quoted(path: str | os.PathLike, key: str) -> str:
    """`path` as a single-quoted string of Hydra's override grammar."""
    text = str(path)
    if "${" in text:
        raise ValueError(f"{key}: the path {text} holds '${{', which a config would resolve: rename it")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def path_override(key: str, paths: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """``key='<path>'`` or ``key=['<path>', ...]`` for a list of paths."""
    if isinstance(paths, (str, os.PathLike)):
        return f"{key}={quoted(paths, key)}"
    return f"{key}=[{','.join(quoted(path, key) for path in paths)}]"
