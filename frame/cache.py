"""Where frame caches what it fetches once (the converted VGG-16 weights), with no heavy import:
``frame-fetch-weights --help`` shows the folder before torch loads."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$FRAME_CACHE``, else ``~/.cache/frame``."""
    root = cache_dir or os.environ.get("FRAME_CACHE") or Path.home() / ".cache" / "frame"
    return Path(root).expanduser()
