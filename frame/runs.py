"""A training run's folder read back: its config, its data, its metrics, its images.

``train.py`` writes each run to one folder:

    <run>/.hydra/config.yaml      the composed config
    <run>/csv/metrics.csv         every logged metric (train/*, eval/*, lr-*), one row per logging call
    <run>/samples/step_*.png      observed images (left) next to the chains (right)
    <run>/detectors/step_*.png    detector maps (models with learned filters)
    <run>/checkpoints/last.ckpt   weights and chains

A run folder may come from another machine: its config is read as plain YAML (never through
Hydra, never instantiated; no aliases, which let a few hundred bytes expand into gigabytes),
and only plain values are taken from it, an image size no larger than :data:`MAX_IMAGE_SIDE`.
Only files that resolve inside the run folder are read from it (a link to a file elsewhere is
passed over), and only real PNG files are offered as its images.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import yaml

CONFIG = Path(".hydra") / "config.yaml"
#: the data keys an evaluation rebuilds the training images from
DATA_KEYS = ("root", "embedded", "image_size", "grayscale", "on_bad_image")
_STEP_FILE = re.compile(r"step_(\d+)\.png$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: the largest data.image_size an evaluation rebuilds the training images at
MAX_IMAGE_SIDE = 2048


class PlainLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``): with them a tiny file can expand
    into a structure of billions of nodes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed here", event.start_mark)
        return super().compose_node(parent, index)


def inside(path: Path, run: Path) -> bool:
    """Whether `path` is a regular file that resolves inside the folder `run` (a link to a file elsewhere is not)."""
    try:
        return path.is_file() and run.resolve() in path.resolve().parents
    except (OSError, RuntimeError):  # a link loop
        return False


def run_of(checkpoint: Path) -> Path | None:
    """The run folder holding ``checkpoint`` (``<run>/checkpoints/x.ckpt``), or None outside one."""
    run = checkpoint.resolve().parent.parent
    return run if (run / CONFIG).is_file() else None


def is_run(path: Path) -> bool:
    """A folder train.py wrote (it has a config or a metrics file)."""
    return path.is_dir() and ((path / CONFIG).is_file() or metrics_file(path) is not None)


def read_yaml(path: Path) -> Any:
    """Plain YAML (safe: no tags, no objects; no aliases); a ValueError naming the file."""
    try:
        return yaml.load(path.read_text(), Loader=PlainLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not readable YAML ({' '.join(str(err).split())})") from None


def config_text(run: Path) -> str | None:
    """The run's composed config as written (None without one)."""
    path = run / CONFIG
    return path.read_text() if inside(path, run) else None


def overrides(run: Path) -> list[str]:
    """The command-line overrides of the run (``.hydra/overrides.yaml``), as strings."""
    path = run / ".hydra" / "overrides.yaml"
    found = read_yaml(path) if path.is_file() else None
    return [str(item) for item in found] if isinstance(found, list) else []


def data_config(run: Path) -> dict[str, Any]:
    """The run's ``data`` keys of :data:`DATA_KEYS`, checked to be plain values.

    A relative ``root`` is taken from the current folder, else from the folder the run was
    started in (``.hydra/hydra.yaml``'s ``hydra.runtime.cwd``), where train.py read it.
    """
    path = run / CONFIG
    config = read_yaml(path)
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: no data section to rebuild the training images from; give --data")
    found: dict[str, Any] = {}
    for key in DATA_KEYS:
        value = data.get(key)
        if value is None:
            continue
        plain = value if isinstance(value, list) else [value]
        if not all(isinstance(item, (str, int, bool)) for item in plain) or any(
            isinstance(item, str) and "${" in item for item in plain
        ):
            raise ValueError(f"{path}: data.{key} is not a plain value ({value!r}); give --data")
        found[key] = value
    sides = found.get("image_size")
    if sides is not None and any(not isinstance(side, int) or isinstance(side, bool) or side > MAX_IMAGE_SIDE
                                 for side in (sides if isinstance(sides, list) else [sides])):
        raise ValueError(f"{path}: data.image_size={sides!r} is larger than frame evaluates at ({MAX_IMAGE_SIDE}); "
                         "give --image-size")
    if "root" in found:
        found["root"] = _resolve_roots(found["root"], _started_in(run))
    return found


def _started_in(run: Path) -> Path | None:
    path = run / ".hydra" / "hydra.yaml"
    cwd = read_yaml(path) if path.is_file() else None
    for key in ("hydra", "runtime", "cwd"):
        cwd = cwd.get(key) if isinstance(cwd, dict) else None
    return Path(cwd) if isinstance(cwd, str) else None


def _resolve_roots(root: str | list[str], started_in: Path | None) -> str | list[str]:
    def one(item: str) -> str:
        path = Path(item)
        if path.is_absolute() or path.exists() or started_in is None or not (started_in / path).exists():
            return item
        return str(started_in / path)

    return [one(item) for item in root] if isinstance(root, list) else one(root)


# ---------------------------------------------------------------------------- metrics and images


def metrics_file(run: Path) -> Path | None:
    """``<run>/csv/metrics.csv`` (or the newest ``csv/version_*/metrics.csv``), or None."""
    path = run / "csv" / "metrics.csv"
    if path.is_file():
        return path
    found = sorted((run / "csv").glob("*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def read_metrics(run: Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value), ...]}`` from the run's metrics.csv, in file order ({} without one).

    Lightning writes one row per logging call with the other columns empty; empty and
    non-numeric cells are skipped.
    """
    path = metrics_file(run)
    if path is None:
        return {}
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                step = int(float(row.get("step") or ""))
            except ValueError:
                continue
            for key, cell in row.items():
                if key in ("step", "epoch") or key is None or not cell:
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    continue
                if math.isfinite(value):
                    series.setdefault(key, []).append((step, value))
    return series


def step_images(run: Path, folder: str) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of ``<run>/<folder>/step_*.png``, by step: only PNG files (by their
    signature) that resolve inside `run`."""
    found = []
    for path in (run / folder).glob("step_*.png"):
        match = _STEP_FILE.search(path.name)
        if match and inside(path, run) and is_png(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def is_png(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
