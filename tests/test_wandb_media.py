"""What W&B receives: the offline run's images and history, read back and compared with the run's files.

One tiny run of train.py's config (``debug=fast``, trained in this process) with W&B offline,
a learned-filter model (so detector maps are drawn too) and the EvalMetrics callback. Then:
every image in the W&B run is the PNG written on disk at the same step, pixel for pixel (not
a black 0-1 image), and every metric of metrics.csv is in the W&B history.

The offline history lives only in ``run-<id>.wandb``: a LevelDB-style log of protobuf
``Record``s (wandb 0.31 ships no Python reader for it), read by :func:`wandb_records`.
"""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: with parallel workers (pytest-xdist), the tests of one trained run share a worker
pytestmark = pytest.mark.xdist_group("wandb_run")
BLOCK = 32768  # LevelDB log block size
FILE_HEADER = 7  # ":W&B", magic 0xBEE1, version
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path):
    """The protobuf records of an offline run's ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run log"
    pos, parts = FILE_HEADER, []
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, FIRST):
            parts = [chunk]
        elif kind in (MIDDLE, LAST):
            parts.append(chunk)
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            yield record


def wandb_history(path: Path) -> list[dict]:
    """Every history row of the run: {key: decoded value}."""
    rows = []
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from frame.run import train
    from tests.test_training import make_cfg

    out = tmp_path_factory.mktemp("wandb_run")
    eval_metrics = (
        "++callbacks.eval_metrics={_target_:frame.callbacks.EvalMetrics,every_n_steps:2,n_samples:6,"
        "kind:objects,source:random,min_size:32}"
    )
    train(make_cfg(out, "model=gconvnet", "logger=wandb", "model.buffer.n_chains=6", "callbacks.detector_maps.every_n_steps=1",
                   eval_metrics))
    return out


def offline_run(out: Path) -> Path:
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("key, folder", [("samples", "samples"), ("detectors", "detectors")])
def test_wandb_images_are_the_pngs_on_disk(run, key, folder):
    wandb_dir = offline_run(run)
    rows = [row for row in wandb_history(next(wandb_dir.glob("*.wandb"))) if f"{key}/filenames" in row]
    assert len(rows) >= 3, f"{key}: {len(rows)} images in the W&B history"
    for row in rows:
        (filename,) = row[f"{key}/filenames"]
        logged = np.asarray(Image.open(wandb_dir / "files" / filename).convert("RGB"))
        on_disk = np.asarray(Image.open(run / folder / f"step_{row['trainer/global_step']:06d}.png").convert("RGB"))
        assert logged.max() > 1, f"{filename} is black: W&B got [0, 1] floats as 0-255 pixels"
        assert logged.shape == on_disk.shape
        np.testing.assert_array_equal(logged, on_disk, err_msg=filename)


def test_every_csv_metric_is_in_the_wandb_history(run):
    with open(run / "csv" / "metrics.csv") as handle:
        csv_keys = set(csv.DictReader(handle).fieldnames) - {"epoch", "step"}
    history = wandb_history(next(offline_run(run).glob("*.wandb")))
    wandb_keys = set().union(*history)
    assert {"train/gap_rel", "eval/kid", "eval/kid_floor", "eval/coverage", "eval/fd", "detectors/freq_obs"} <= csv_keys
    assert csv_keys <= wandb_keys, sorted(csv_keys - wandb_keys)
    gaps = [row["train/gap_rel"] for row in history if "train/gap_rel" in row]
    kids = [row["eval/kid"] for row in history if "eval/kid" in row]
    assert len(gaps) == 3 and all(np.isfinite(gaps))
    assert len(kids) == 2 and all(np.isfinite(kids))  # steps 2 and 3 (the end)
